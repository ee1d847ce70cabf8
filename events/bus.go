// Package events is igmirror's in-process event bus: a bounded channel of
// MessageSaved events between the code that stores messages and the mirror
// workers. Publishing never blocks: when the channel is full, the event is
// dropped and counted, and the message waits in the local store to be offered again.
package events

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"igmirror/domain"
)

// MessageSaved says a message was committed to the local store. It carries
// the whole message so that the mirror needs no read of its own.
type MessageSaved struct {
	// Message is the stored message. Whether the mirror must first look
	// for it in the CRM is not carried here: the mirror's claim in the
	// store says so (an earlier attempt, or a mirrored message).
	Message domain.Message
}

// Outcome is what happened to one published event.
type Outcome int

// The outcomes of Publish.
const (
	Queued        Outcome = iota // on the channel
	DroppedFull                  // the channel was full
	DroppedClosed                // the bus is closed (shutting down)
	AlreadyQueued                // the same message is queued or being mirrored
)

// Drop reasons, as the metrics label them.
const (
	ReasonQueueFull = "queue_full"
	ReasonClosed    = "shutdown"
)

// Bus is the bounded channel with its counters. The zero value is not
// usable; call New.
type Bus struct {
	ch  chan MessageSaved
	log *slog.Logger

	mu     sync.RWMutex // guards closed against a send racing Close
	closed bool
	// inflight holds the ids queued or being mirrored. A plain map: a
	// sync.Map kept the trie nodes that a full queue's store-then-delete
	// of every turned-away id grew (4 MiB after a million drops).
	inflightMu sync.Mutex
	inflight   map[int64]struct{}

	// reserved is room held by open Reservations for events about to be
	// published: other offers see the channel that much fuller.
	reserved atomic.Int64

	published   atomic.Uint64
	droppedFull atomic.Uint64
	droppedShut atomic.Uint64

	logMu    sync.Mutex // guards fullLog and shutLog
	fullLog  dropLog
	shutLog  dropLog
	logEvery time.Duration
}

// dropLog is the log-rate state of one drop reason.
type dropLog struct {
	last     time.Time
	unlogged uint64
}

// New returns a bus whose channel holds capacity events.
func New(capacity int, log *slog.Logger) *Bus {
	if log == nil {
		log = slog.Default()
	}
	return &Bus{ch: make(chan MessageSaved, capacity), log: log, logEvery: 10 * time.Second, inflight: make(map[int64]struct{})}
}

// Publish offers ev to the channel without ever waiting. A message that is
// already queued or in the mirror's hands is not queued twice. Every event
// turned away is counted and (rate-limited) logged as a drop.
func (b *Bus) Publish(ev MessageSaved) Outcome { return b.offer(ev, true, false) }

// Offer is Publish for a message offered again (reconciler, resync): a
// full queue turns it away without counting a drop, since the message is
// already recorded as waiting in the store.
func (b *Bus) Offer(ev MessageSaved) Outcome { return b.offer(ev, false, false) }

func (b *Bus) isClosed() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.closed
}

// offer puts ev on the channel. Only an event with held room (held) may
// take the room that Reservations hold.
func (b *Bus) offer(ev MessageSaved, countDrop, held bool) Outcome {
	id := ev.Message.ID
	if !b.claim(id) {
		return AlreadyQueued
	}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		b.release(id)
		if countDrop {
			b.droppedShut.Add(1)
			b.noteDrops(ReasonClosed, 1)
		}
		return DroppedClosed
	}
	// Room that Reserve holds is for the events it was held for.
	if held || len(b.ch)+int(b.reserved.Load()) < cap(b.ch) {
		select {
		case b.ch <- ev:
			b.mu.RUnlock()
			b.published.Add(1)
			return Queued
		default:
		}
	}
	b.mu.RUnlock()
	b.release(id)
	if countDrop {
		b.droppedFull.Add(1)
		b.noteDrops(ReasonQueueFull, 1)
	}
	return DroppedFull
}

// noteDrops logs drops for reason at most once per interval, with the
// count since the last line: a full queue drops thousands a second, and a
// line each would drown the log.
func (b *Bus) noteDrops(reason string, n uint64) {
	l := &b.fullLog
	if reason == ReasonClosed {
		l = &b.shutLog
	}
	b.logMu.Lock()
	l.unlogged += n
	now := time.Now()
	if now.Sub(l.last) < b.logEvery {
		b.logMu.Unlock()
		return
	}
	since := l.unlogged
	l.unlogged = 0
	l.last = now
	b.logMu.Unlock()
	if reason == ReasonClosed {
		b.log.Warn("mirror stopped: events dropped during shutdown; the messages stay in the local store and are offered again",
			"dropped_since_last_log", since, "dropped_total", b.droppedShut.Load())
		return
	}
	b.log.Warn("mirror queue full: events dropped; the messages stay in the local store and are offered again",
		"dropped_since_last_log", since, "dropped_total", b.droppedFull.Load(), "capacity", cap(b.ch))
}

// Events is the channel the mirror workers drain. It is closed by Close.
func (b *Bus) Events() <-chan MessageSaved { return b.ch }

// Done tells the bus the mirror has finished with a message (mirrored,
// failed or given back), so that it may be offered again.
func (b *Bus) Done(id int64) { b.release(id) }

// claim marks id in flight, unless it already is.
func (b *Bus) claim(id int64) bool {
	b.inflightMu.Lock()
	defer b.inflightMu.Unlock()
	if _, dup := b.inflight[id]; dup {
		return false
	}
	b.inflight[id] = struct{}{}
	return true
}

func (b *Bus) release(id int64) {
	b.inflightMu.Lock()
	delete(b.inflight, id)
	b.inflightMu.Unlock()
}

// Close stops publishing and closes the channel; the workers drain what is
// left. Safe to call more than once.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.ch)
	}
}

// Len is the number of queued events.
func (b *Bus) Len() int { return len(b.ch) }

// Cap is the channel's capacity.
func (b *Bus) Cap() int { return cap(b.ch) }

// Room is how many events the channel can take now, less the room that
// open Reservations hold for events about to be published.
func (b *Bus) Room() int { return max(cap(b.ch)-len(b.ch)-int(b.reserved.Load()), 0) }

// Published counts events put on the channel.
func (b *Bus) Published() uint64 { return b.published.Load() }

// Dropped counts events turned away for reason (ReasonQueueFull or ReasonClosed).
func (b *Bus) Dropped(reason string) uint64 {
	if reason == ReasonClosed {
		return b.droppedShut.Load()
	}
	return b.droppedFull.Load()
}
