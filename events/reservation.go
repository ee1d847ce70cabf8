package events

import "sync/atomic"

// Reservation is room on the channel held for events about to be
// published. Get one from Bus.Reserve and close it when done, normally
// with a defer straight after Reserve so that no return path can keep the
// room:
//
//	r := bus.Reserve(len(msgs))
//	defer r.Close()
//
// The ingester reserves before it saves, so that a message the queue has
// no room for is stored as dropped in the same write, instead of stored
// pending and rewritten as dropped by a second one (with the CRM stalled,
// that second write was every message's, and took a quarter of the
// SQLite writer's time). A held slot is room kept from Offer (the
// reconciler, resyncs) and from plain Publish, never a guarantee: an
// event that still finds the channel full is dropped as by Publish.
//
// Every slot goes back to the bus exactly once, used by Publish or given
// back by Close, whatever the order of calls. A Reservation is safe for
// concurrent use.
type Reservation struct {
	bus *Bus
	// held counts the slots not yet used or given back. A slot leaves it
	// only by a successful decrement (Publish) or by the swap to 0
	// (Close), so no slot can be given back twice.
	held atomic.Int64
}

// Reserve holds room on the channel for up to n events, without waiting,
// and returns the Reservation (never nil) that holds it: room for n
// events while the channel has it, fewer or none when the channel is
// (nearly) full or the bus is closed. The caller publishes each held
// event with Publish, counts each event it had no room for with
// TurnedAway, and must Close the Reservation.
func (b *Bus) Reserve(n int) *Reservation {
	r := &Reservation{bus: b}
	if n <= 0 || b.isClosed() {
		return r
	}
	for {
		reserved := b.reserved.Load()
		room := int64(cap(b.ch)-len(b.ch)) - reserved
		if room <= 0 {
			return r
		}
		k := min(int64(n), room)
		if b.reserved.CompareAndSwap(reserved, reserved+k) {
			r.held.Store(k)
			return r
		}
	}
}

// Held is how many slots r still holds: those Reserve granted, less one
// for each Publish that used one, and none once r is closed.
func (r *Reservation) Held() int { return int(r.held.Load()) }

// Publish offers ev to the channel in a slot r holds, and uses that slot
// up whatever the outcome. Once r holds no slot (all used, or r closed)
// it is a plain Bus.Publish: it never takes room that r no longer holds,
// and a full queue counts a drop.
func (r *Reservation) Publish(ev MessageSaved) Outcome {
	if !r.take() {
		return r.bus.Publish(ev)
	}
	out := r.bus.offer(ev, true, true)
	// Given back after the send, not before: in between, another offer
	// could take the slot this event was held for.
	r.bus.reserved.Add(-1)
	return out
}

// take claims one held slot, reporting false when there is none.
func (r *Reservation) take() bool {
	for {
		n := r.held.Load()
		if n <= 0 {
			return false
		}
		if r.held.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// TurnedAway counts, and logs like any drop, k events that had no room in
// the reservation: their messages were stored as dropped. A drop while
// the bus is closed counts as a shutdown drop.
func (r *Reservation) TurnedAway(k int) {
	if k <= 0 {
		return
	}
	b := r.bus
	if b.isClosed() {
		b.droppedShut.Add(uint64(k))
		b.noteDrops(ReasonClosed, uint64(k))
		return
	}
	b.droppedFull.Add(uint64(k))
	b.noteDrops(ReasonQueueFull, uint64(k))
}

// Close gives back every slot r still holds (those of duplicates, or all
// of them when the caller gave up before publishing). Closing again does
// nothing; Publish after Close is a plain Publish.
func (r *Reservation) Close() {
	if n := r.held.Swap(0); n > 0 {
		r.bus.reserved.Add(-n)
	}
}
