package ggml

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// ownMapping reports whether [base, base+size) lies in one private,
// writable, anonymous and unnamed mapping listed in the maps file (a
// /proc/<pid>/maps) that starts and ends less than a page from it: the
// shape of the C library's mapping for one large allocation, which it
// unmaps whole on free and never hands out again. The heap is named
// ("[heap]"), and a mapping merged with a neighbour or holding other
// allocations is longer, so neither qualifies.
func ownMapping(mapsPath string, base, size, page uintptr) bool {
	if size == 0 || base+size < base {
		return false
	}
	f, err := os.Open(mapsPath)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || uintptr(start) > base || base >= uintptr(end) {
			continue
		}
		// The one mapping that holds base decides.
		return fields[1] == "rw-p" && fields[4] == "0" && len(fields) == 5 &&
			base-uintptr(start) < page &&
			uintptr(end) >= base+size && uintptr(end)-(base+size) < page
	}
	return false
}
