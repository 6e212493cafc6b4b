package cache

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"testing"
)

// FuzzReadInto feeds arbitrary bytes as an entry file: ReadInto either
// refuses it (and removes it) or applies exactly length bytes whose
// CRC-32C is the header's, mapped or read, into memory it was handed.
func FuzzReadInto(f *testing.F) {
	good := func(n, pad int) []byte {
		data := make([]byte, n)
		fill(data, 1)
		hdr := make([]byte, Header+pad)
		copy(hdr, magic)
		binary.LittleEndian.PutUint64(hdr[8:], uint64(n))
		binary.LittleEndian.PutUint32(hdr[16:], crc32.Checksum(data, castagnoli))
		binary.LittleEndian.PutUint32(hdr[20:], uint32(pad))
		return append(hdr, data...)
	}
	f.Add(good(100, 0), false, uint16(0))
	f.Add(good(3<<20, 4096-Header), true, uint16(0))
	f.Add(good(1<<20+5, 40), true, uint16(64))
	f.Add([]byte("BOXCACH2"), true, uint16(0))
	f.Fuzz(func(t *testing.T, file []byte, mappable bool, at uint16) {
		c, dir := openTest(t)
		os.MkdirAll(dir, 0o700)
		p := c.name(7, [32]byte{})
		if err := os.WriteFile(p, file, 0o600); err != nil {
			t.Fatal(err)
		}
		var got []byte
		ok := c.ReadInto(7, func(n uint64) ([]byte, bool, bool) {
			if n > 8<<20 {
				return nil, false, false
			}
			off := int(at % 4096)
			got = region(t, int(n)+off+4096)[off : off+int(n)]
			return got, mappable, true
		}, nil)
		if !ok {
			return
		}
		if len(file) < Header {
			t.Fatalf("a %d-byte file was applied", len(file))
		}
		if uint64(len(got)) != binary.LittleEndian.Uint64(file[8:]) || crc32.Checksum(got, castagnoli) != binary.LittleEndian.Uint32(file[16:]) {
			t.Fatal("applied bytes do not match the header")
		}
		pad := int(binary.LittleEndian.Uint32(file[20:]))
		if string(got) != string(file[Header+pad:]) {
			t.Fatal("applied bytes are not the file's data")
		}
	})
}
