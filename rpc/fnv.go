package rpc

// FNV-1a 64-bit parameters (the hash the reference client sends with
// SET_TENSOR_HASH and the reference server uses to name cache files).
const (
	FNV1a64Offset = 0xcbf29ce484222325
	FNV1a64Prime  = 0x100000001b3
)

// FNV1a64 returns the 64-bit FNV-1a hash of data.
func FNV1a64(data []byte) uint64 { return FNV1a64Update(FNV1a64Offset, data) }

// FNV1a64Update continues an FNV-1a 64 hash: start with FNV1a64Offset and
// feed the data in any number of chunks; the result equals FNV1a64 of the
// concatenation.
func FNV1a64Update(h uint64, data []byte) uint64 {
	for len(data) >= 4 {
		h = (h ^ uint64(data[0])) * FNV1a64Prime
		h = (h ^ uint64(data[1])) * FNV1a64Prime
		h = (h ^ uint64(data[2])) * FNV1a64Prime
		h = (h ^ uint64(data[3])) * FNV1a64Prime
		data = data[4:]
	}
	for _, c := range data {
		h = (h ^ uint64(c)) * FNV1a64Prime
	}
	return h
}

// FNV1a is an incremental FNV-1a 64 hasher that implements io.Writer. The
// zero value is NOT ready; use NewFNV1a.
type FNV1a struct{ h uint64 }

// NewFNV1a returns a hasher in its initial state.
func NewFNV1a() *FNV1a { return &FNV1a{h: FNV1a64Offset} }

// Write adds p to the hash. It never fails.
func (f *FNV1a) Write(p []byte) (int, error) {
	f.h = FNV1a64Update(f.h, p)
	return len(p), nil
}

// Sum64 returns the hash of everything written so far.
func (f *FNV1a) Sum64() uint64 { return f.h }

// Reset returns the hasher to its initial state.
func (f *FNV1a) Reset() { f.h = FNV1a64Offset }

// CacheName returns the reference server's cache file name for a hash:
// 16 lowercase, zero-padded hex digits.
func CacheName(h uint64) string {
	const hex = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hex[h&15]
		h >>= 4
	}
	return string(b[:])
}
