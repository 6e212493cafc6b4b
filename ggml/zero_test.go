package ggml

import "testing"

// Zero leaves every byte of a used CPU buffer 0, the partial pages at its
// ends included, whatever its size.
func TestZeroClearsEveryByte(t *testing.T) {
	be, err := Open(cpuDevice(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	for _, size := range []uint64{1, 100, 4095, 4096, 4097, 3 << 20, 3<<20 + 123} {
		buf, err := be.Alloc(size)
		if err != nil {
			t.Fatal(err)
		}
		b := buf.HostBytes(0, buf.Size())
		for i := range b {
			b[i] = 0xa5
		}
		buf.Zero()
		for i, v := range b {
			if v != 0 {
				t.Fatalf("size %d: byte %d is %#x after Zero", size, i, v)
			}
		}
		buf.Free()
	}
}
