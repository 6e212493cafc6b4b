package serve

import (
	"context"
	"errors"
	"sync"

	"github.com/boxproj/box/llama"
)

// errQueueFull is answered with 429.
var errQueueFull = errors.New("server busy: all slots are taken and the queue is full")

// slots hands out the contexts, one request each, with a bounded wait
// queue in front of them.
type slots struct {
	free  chan *llama.Context
	all   []*llama.Context
	limit int // running + waiting

	mu      sync.Mutex
	waiting int
	busy    int
	inUse   map[*llama.Context]bool
}

func newSlots(ctxs []*llama.Context, queue int) *slots {
	s := &slots{free: make(chan *llama.Context, len(ctxs)), all: ctxs, limit: len(ctxs) + queue, inUse: map[*llama.Context]bool{}}
	for _, c := range ctxs {
		s.free <- c
	}
	return s
}

// acquire takes a free context, waiting in the queue when none is free. It
// fails at once with errQueueFull when the queue is full.
func (s *slots) acquire(ctx context.Context) (*llama.Context, error) {
	s.mu.Lock()
	if s.waiting+s.busy >= s.limit {
		s.mu.Unlock()
		return nil, errQueueFull
	}
	s.waiting++
	s.mu.Unlock()

	select {
	case c := <-s.free:
		s.mu.Lock()
		s.waiting--
		s.busy++
		s.inUse[c] = true
		s.mu.Unlock()
		return c, nil
	case <-ctx.Done():
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (s *slots) release(c *llama.Context) {
	s.mu.Lock()
	s.busy--
	delete(s.inUse, c)
	s.mu.Unlock()
	s.free <- c
}

func (s *slots) counts() (busy, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy, s.waiting
}

// busyList says, per slot in order, whether a request holds it.
func (s *slots) busyList() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bool, len(s.all))
	for i, c := range s.all {
		out[i] = s.inUse[c]
	}
	return out
}

// drain takes every context back, waiting for requests in flight.
func (s *slots) drain() {
	for range s.all {
		<-s.free
	}
}

// close frees every context; callers make sure none is in use.
func (s *slots) close() {
	for _, c := range s.all {
		c.Close()
	}
}
