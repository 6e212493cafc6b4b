// Package bench measures box against the machine's physical limits: memory
// read bandwidth for token generation, and (later) loopback TCP for RPC.
package bench

/*
#include <stdint.h>
#include <stddef.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

// Sum 64-bit words with several independent wide accumulators, so the loop
// is bound by memory, not by the adds.
static uint64_t box_read_sum(const uint64_t *p, size_t n) {
	size_t i = 0;
	uint64_t s = 0;
#if defined(__AVX2__)
	__m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
	for (; i + 16 <= n; i += 16) {
		a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(p + i)));
		b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
		c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
		d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
	}
	__m256i t = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
	uint64_t lanes[4];
	_mm256_storeu_si256((__m256i *)lanes, t);
	s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
#endif
	uint64_t a2 = 0, b2 = 0, c2 = 0, d2 = 0;
	for (; i + 4 <= n; i += 4) {
		a2 += p[i]; b2 += p[i+1]; c2 += p[i+2]; d2 += p[i+3];
	}
	for (; i < n; i++) a2 += p[i];
	return s + a2 + b2 + c2 + d2;
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
