// Package bench measures box against the machine's physical limits: memory
// read bandwidth for token generation, and (later) loopback TCP for RPC.
package bench

/*
#include <stdint.h>
#include <stddef.h>

// Sum 64-bit words 4 lanes wide so the compiler emits wide vector loads
// (the package is built with the project's -O3 -march flags).
static uint64_t box_read_sum(const uint64_t *p, size_t n) {
	uint64_t a = 0, b = 0, c = 0, d = 0;
	size_t i = 0;
	for (; i + 4 <= n; i += 4) {
		a += p[i]; b += p[i+1]; c += p[i+2]; d += p[i+3];
	}
	for (; i < n; i++) a += p[i];
	return a + b + c + d;
}
*/
import "C"

import (
	"context"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// ReadBandwidth measures memory read bandwidth in bytes/s: every CPU reads
// its share of a buffer far larger than the caches; the best of reps passes
// is returned (the least disturbed by other work on the machine).
func ReadBandwidth(ctx context.Context, size int, reps int) (float64, error) {
	words := size / 8
	buf := make([]uint64, words)
	for i := range buf { // touch every page so reads hit RAM, not the zero page
		buf[i] = uint64(i)
	}
	workers := runtime.NumCPU()
	chunk := words / workers
	best := 0.0
	var sink uint64
	for r := 0; r < reps; r++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		var wg sync.WaitGroup
		sums := make([]uint64, workers)
		t0 := time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				part := buf[w*chunk : (w+1)*chunk]
				sums[w] = uint64(C.box_read_sum((*C.uint64_t)(unsafe.Pointer(&part[0])), C.size_t(len(part))))
			}(w)
		}
		wg.Wait()
		el := time.Since(t0).Seconds()
		for _, s := range sums {
			sink += s
		}
		if bw := float64(chunk*workers*8) / el; bw > best {
			best = bw
		}
	}
	runtime.KeepAlive(sink)
	return best, nil
}
