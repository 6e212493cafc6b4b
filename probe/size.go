package probe

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// SizeUnits is the help text for what ParseSize accepts.
const SizeUnits = "a byte count, or a number with a unit: B; KiB, MiB, GiB, TiB (powers of 1024); KB, MB, GB, TB (powers of 1000)"

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	// Single letters, as llama.cpp and earlier box releases read them: binary.
	"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
}

// ParseSize reads a size such as 512MiB, 4GiB, 1.5GB or 1048576 (bytes).
// Units are case-insensitive and may follow a space; anything else, such as
// "20XB", "4 GiB of RAM" or "-1", is an error, never a smaller size. "" is 0.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	mult, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	v, err := strconv.ParseFloat(t[:i], 64)
	if !ok || err != nil {
		return 0, fmt.Errorf("invalid size %q: want %s", s, SizeUnits)
	}
	if b := v * mult; b < math.MaxInt64 {
		return uint64(b), nil
	}
	return 0, fmt.Errorf("invalid size %q: too large", s)
}

// Size is a flag value (flag.Value, pflag.Value) that holds a size and
// refuses, when the flag is parsed, text that is not one.
type Size struct {
	Text  string
	Bytes uint64
}

// NewSize is a Size with a default; it panics if def is not a size.
func NewSize(def string) *Size {
	n, err := ParseSize(def)
	if err != nil {
		panic(err)
	}
	return &Size{def, n}
}

func (s *Size) String() string { return s.Text }
func (s *Size) Type() string   { return "size" }
func (s *Size) Set(v string) (err error) {
	s.Text = v
	s.Bytes, err = ParseSize(v)
	return err
}
