package worker

import (
	"sync"
	"time"

	"github.com/boxproj/box/api"
)

// Event and EventKind are the wire types of GET /v1/events (package api).
type (
	Event     = api.Event
	EventKind = api.EventKind
)

// eventLog is a ring of recent events with live subscribers.
type eventLog struct {
	mu   sync.Mutex
	ring []Event
	next int
	seq  uint64
	subs map[chan Event]struct{}
}

func newEventLog(n int) *eventLog {
	return &eventLog{ring: make([]Event, 0, n), subs: map[chan Event]struct{}{}}
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq = l.seq
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, e)
	} else {
		l.ring[l.next] = e
		l.next = (l.next + 1) % cap(l.ring)
	}
	for ch := range l.subs {
		select {
		case ch <- e:
		default: // a slow subscriber misses events rather than blocking the worker
		}
	}
}

// since returns events with Seq > after, oldest first.
func (l *eventLog) since(after uint64) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Event, 0, len(l.ring))
	for i := 0; i < len(l.ring); i++ {
		e := l.ring[(l.next+i)%len(l.ring)]
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out
}

func (l *eventLog) subscribe() (chan Event, func()) {
	ch := make(chan Event, 64)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}
