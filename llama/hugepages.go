package llama

/*
#include <stdlib.h>
#include "hugepages.h"
*/
import "C"

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/boxproj/box/hostmem"
)

// HugeState is what became of a model's host weights after the load.
type HugeState int

const (
	// HugeOff: not asked for (ModelParams.NoHugePages).
	HugeOff HugeState = iota
	// HugeDone: the hot host weights were moved onto huge pages.
	HugeDone
	// HugeNone: no host weights worth moving (all on devices, or only
	// the token embeddings, which a decode reads a row at a time).
	HugeNone
	// HugeUnsupported: the kernel has transparent huge pages off.
	HugeUnsupported
	// HugeNoRoom: the weights are mapped from the file and copying them
	// into process memory would not fit in what the host has available.
	HugeNoRoom
	// HugeFailed: a step failed; the weights not yet moved stay as loaded.
	HugeFailed
	// HugeMoving: the move is under way, in the background.
	HugeMoving
	// HugeStopped: the model was closed before the move ended.
	HugeStopped
)

func (s HugeState) String() string {
	switch s {
	case HugeOff:
		return "off"
	case HugeDone:
		return "done"
	case HugeNone:
		return "none"
	case HugeUnsupported:
		return "unsupported"
	case HugeNoRoom:
		return "no-room"
	case HugeFailed:
		return "failed"
	case HugeMoving:
		return "moving"
	case HugeStopped:
		return "stopped"
	}
	return fmt.Sprintf("HugeState(%d)", int(s))
}

// HugeReport says how the weights were moved onto huge pages.
type HugeReport struct {
	State HugeState
	// Bytes were moved, of Wanted bytes in the hot spans.
	Bytes, Wanted uint64
	Took          time.Duration
	Err           error // why, when State is HugeFailed
}

// thpEnabled reads the kernel's transparent huge page mode; MADV_HUGEPAGE
// works under "always" and "madvise", not under "never".
func thpEnabled() bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return false
	}
	return !strings.Contains(string(b), "[never]")
}

// maxSpans bounds the span list: one per hot tensor at most, merged.
const maxSpans = 1 << 16

type hugeSpan struct {
	addr, len uint64
	kind      C.int
}

// hugeSpans lists the model's hot host weights in whole 2 MiB pages (see
// hugepages.cpp), or says why none will move.
func hugeSpans(m *C.struct_llama_model) ([]hugeSpan, HugeReport) {
	if !thpEnabled() {
		return nil, HugeReport{State: HugeUnsupported}
	}
	buf := (*C.box_huge_span)(C.calloc(maxSpans, C.size_t(unsafe.Sizeof(C.box_huge_span{}))))
	if buf == nil {
		return nil, HugeReport{State: HugeFailed, Err: fmt.Errorf("huge pages: no memory for the span list")}
	}
	defer C.free(unsafe.Pointer(buf))
	n := int(C.box_huge_spans(m, buf, maxSpans))
	if n < 0 {
		return nil, HugeReport{State: HugeFailed, Err: fmt.Errorf("huge pages: more than %d weight spans", maxSpans)}
	}
	var rep HugeReport
	var mapped uint64
	spans := make([]hugeSpan, 0, n)
	for _, s := range unsafe.Slice(buf, n) {
		spans = append(spans, hugeSpan{uint64(s.addr), uint64(s.len), s.kind})
		rep.Wanted += uint64(s.len)
		if s.kind == C.BOX_HUGE_MAPPED {
			mapped += uint64(s.len)
		}
	}
	if rep.Wanted == 0 {
		rep.State = HugeNone
		return nil, rep
	}
	// Mapped weights become process memory: the file's pages stay cached
	// but can be reclaimed. Anonymous ones are moved in place, one chunk
	// of extra memory at a time.
	if mapped > 0 && !roomFor(mapped) {
		rep.State = HugeNoRoom
		return nil, rep
	}
	rep.State = HugeMoving
	return spans, rep
}

// roomFor says whether n more bytes of process memory leave at least as
// much again available on the host (and under this process's cgroup limit).
func roomFor(n uint64) bool {
	h, err := hostmem.Read("/")
	if err != nil {
		return false
	}
	_, free := hostmem.CPU(^uint64(0), ^uint64(0), h)
	return free >= 2*n
}

// hugeMover moves a model's weights in the background, so the load returns
// as soon as llama.cpp is done. The weights are only read after the load,
// and a chunk's move leaves every byte where it was, but a decode and a
// chunk's copy must not overlap: should mremap fail after dropping the old
// pages, the copy back leaves a moment of zeros. So each chunk holds the
// model's pages lock for writing, and decodes hold it for reading.
type hugeMover struct {
	mu   sync.Mutex
	rep  HugeReport
	lost error // set when a failed move could not put weights back

	stop chan struct{} // closed by Model.Close
	done chan struct{} // closed when the mover has returned
}

func (h *hugeMover) report() HugeReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rep
}

// startHugePages starts moving m's hot host weights onto huge pages.
func (m *Model) startHugePages() {
	spans, rep := hugeSpans(m.m)
	m.huge.rep = rep
	m.huge.stop = make(chan struct{})
	m.huge.done = make(chan struct{})
	if rep.State != HugeMoving {
		close(m.huge.done)
		return
	}
	go m.moveHugePages(spans)
}

func (m *Model) moveHugePages(spans []hugeSpan) {
	defer close(m.huge.done)
	t0 := time.Now()
	finish := func(st HugeState, err, lost error) {
		m.huge.mu.Lock()
		m.huge.rep.State, m.huge.rep.Err, m.huge.rep.Took = st, err, time.Since(t0)
		if lost != nil {
			m.huge.lost = lost
		}
		m.huge.mu.Unlock()
	}
	for _, s := range spans {
		for off := uint64(0); off < s.len; off += C.BOX_HUGE_CHUNK {
			select {
			case <-m.huge.stop:
				finish(HugeStopped, nil, nil)
				return
			default:
			}
			n := min(uint64(C.BOX_HUGE_CHUNK), s.len-off)
			var lost C.int
			m.pages.Lock()
			rc := C.box_huge_move(C.uint64_t(s.addr+off), C.uint64_t(n), s.kind, &lost)
			m.pages.Unlock()
			if rc != 0 {
				err := fmt.Errorf("huge pages: move %d MiB at %#x: %w", n>>20, s.addr+off, syscall.Errno(rc))
				var lerr error
				if lost != 0 {
					lerr = fmt.Errorf("%w (the weights there are lost)", err)
				}
				finish(HugeFailed, err, lerr)
				return
			}
			m.huge.mu.Lock()
			m.huge.rep.Bytes += n
			m.huge.mu.Unlock()
		}
	}
	finish(HugeDone, nil, nil)
}

// HugePages reports what has become of the host weights' pages so far.
func (m *Model) HugePages() HugeReport { return m.huge.report() }

// WaitHugePages waits until the weights have moved onto huge pages (or it
// was decided they will not) or ctx ends, and reports.
func (m *Model) WaitHugePages(ctx context.Context) HugeReport {
	if m.huge.done != nil {
		select {
		case <-m.huge.done:
		case <-ctx.Done():
		}
	}
	return m.huge.report()
}

// readWeights holds the model's pages for a read of its weights and says
// whether they are intact; the caller calls the returned release.
func (m *Model) readWeights() (release func(), err error) {
	m.pages.RLock()
	m.huge.mu.Lock()
	lost := m.huge.lost
	m.huge.mu.Unlock()
	if lost != nil {
		m.pages.RUnlock()
		return nil, lost
	}
	return m.pages.RUnlock, nil
}
