package ctl

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Page is a small shared memory region the compute process writes and the
// supervisor reads: activity counters, the command running now and since
// when, and a latency histogram per command. Writes are single atomic
// stores, so the hot path pays nothing for being watched, and the figures
// survive the process: after it exits the supervisor still reads them.
type Page struct {
	mem []byte
	w   *[pageWords]atomic.Uint64
}

// Commands tracked in the histogram (protocol command numbers below this).
const MaxCmds = 32

// Buckets is the upper bounds of the latency histogram, in seconds:
// 10 µs × 4^i, i = 0..11, then +Inf.
var Buckets = func() []float64 {
	b := make([]float64, 12)
	v := 1e-5
	for i := range b {
		b[i] = v
		v *= 4
	}
	return b
}()

const (
	wCommands = iota
	wBytesIn
	wBytesOut
	wCurrent   // command number + 1; 0 when waiting for one
	wStarted   // unix nanos the current command started
	wActive    // unix nanos the last command finished
	wCacheHits // SET_TENSOR_HASH answered from the cache
	wHeader

	nBuckets  = 13 // 12 bounds + Inf
	wHist     = wHeader
	wSums     = wHist + MaxCmds*nBuckets // nanoseconds per command
	pageWords = wSums + MaxCmds
	PageSize  = pageWords * 8
)

// NewPage makes a page in a memfd; f is to be handed to the compute process.
func NewPage() (*Page, *os.File, error) {
	fd, err := unix.MemfdCreate("box-conn", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "box-conn-page")
	if err := f.Truncate(PageSize); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("memfd size: %w", err)
	}
	p, err := MapPage(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return p, f, nil
}

// MapPage maps a page handed over as f.
func MapPage(f *os.File) (*Page, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap page: %w", err)
	}
	return &Page{mem: mem, w: (*[pageWords]atomic.Uint64)(unsafe.Pointer(&mem[0]))}, nil
}

// Close unmaps the page.
func (p *Page) Close() {
	if p.mem != nil {
		unix.Munmap(p.mem)
		p.mem, p.w = nil, nil
	}
}

// Begin records that command cmd has started.
func (p *Page) Begin(cmd uint8, now time.Time) {
	p.w[wStarted].Store(uint64(now.UnixNano()))
	p.w[wCurrent].Store(uint64(cmd) + 1)
}

// End records that the current command finished after d, with in and out
// payload bytes.
func (p *Page) End(cmd uint8, d time.Duration, in, out uint64, now time.Time) {
	p.w[wCurrent].Store(0)
	p.w[wActive].Store(uint64(now.UnixNano()))
	p.w[wCommands].Add(1)
	p.w[wBytesIn].Add(in)
	p.w[wBytesOut].Add(out)
	if int(cmd) < MaxCmds {
		b := len(Buckets)
		for i, ub := range Buckets {
			if d.Seconds() <= ub {
				b = i
				break
			}
		}
		p.w[wHist+int(cmd)*nBuckets+b].Add(1)
		p.w[wSums+int(cmd)].Add(uint64(d.Nanoseconds()))
	}
}

// CacheHit counts a SET_TENSOR_HASH served from the cache.
func (p *Page) CacheHit() { p.w[wCacheHits].Add(1) }

// Activity is a snapshot of a page.
type Activity struct {
	Commands, BytesIn, BytesOut, CacheHits uint64
	// Running is the command running now and Since when it started;
	// ok is false when the process waits for a command.
	Running uint8
	Busy    bool
	Since   time.Time
	Last    time.Time // when the last command finished (zero: none yet)
}

// Read takes a snapshot.
func (p *Page) Read() Activity {
	a := Activity{Commands: p.w[wCommands].Load(), BytesIn: p.w[wBytesIn].Load(), BytesOut: p.w[wBytesOut].Load(),
		CacheHits: p.w[wCacheHits].Load()}
	if cur := p.w[wCurrent].Load(); cur != 0 {
		a.Running, a.Busy = uint8(cur-1), true
		a.Since = time.Unix(0, int64(p.w[wStarted].Load()))
	}
	if t := p.w[wActive].Load(); t != 0 {
		a.Last = time.Unix(0, int64(t))
	}
	return a
}

// Histogram returns command cmd's bucket counts (not cumulative, the last
// one +Inf) and the sum of its durations.
func (p *Page) Histogram(cmd int) (counts [nBuckets]uint64, sum time.Duration) {
	for i := range counts {
		counts[i] = p.w[wHist+cmd*nBuckets+i].Load()
	}
	return counts, time.Duration(p.w[wSums+cmd].Load())
}

// NBuckets is the number of histogram buckets including +Inf.
const NBuckets = nBuckets
