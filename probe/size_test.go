package probe

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"": 0, "0": 0, "1048576": 1 << 20, "512B": 512, "1KiB": 1024, "4GiB": 4 << 30, "4 gib": 4 << 30,
		"1.5GB": 1.5e9, "20GB": 20e9, "2TB": 2e12, "1TiB": 1 << 40, "16MiB": 16 << 20, "3MB": 3e6, "2G": 2 << 30,
		"0.5KiB": 512,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"20XB", "lots", "-1", "1e3", "GiB", "4 GiB of RAM", "1..5GB", "inf", "nan", "4GiBs", "99999999TiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		} else if !strings.Contains(err.Error(), `invalid size "`+in+`"`) {
			t.Errorf("ParseSize(%q): error %q does not quote the input", in, err)
		}
	}
}
