package events

import (
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// publishIn calls r.Publish and fails the test if it does not return: a
// held slot must never make a publisher wait either.
func publishIn(t *testing.T, r *Reservation, e MessageSaved) Outcome {
	t.Helper()
	done := make(chan Outcome, 1)
	go func() { done <- r.Publish(e) }()
	select {
	case o := <-done:
		return o
	case <-time.After(10 * time.Second):
		t.Fatalf("Reservation.Publish(%d) blocked", e.Message.ID)
		return 0
	}
}

// assertAllRoomBack checks that no slot is held any more and the channel,
// drained, has all its room again.
func assertAllRoomBack(t *testing.T, b *Bus) {
	t.Helper()
	if got := b.reserved.Load(); got != 0 {
		t.Errorf("slots held by the bus after every reservation closed: got %d, want 0", got)
	}
	if got, want := b.Room(), b.Cap()-b.Len(); got != want {
		t.Errorf("Room: got %d, want %d (Cap %d less Len %d)", got, want, b.Cap(), b.Len())
	}
}

func TestReserveHoldsRoomForItsEvents(t *testing.T) {
	b, logs := newLogged(4)
	r1 := b.Reserve(3)
	defer r1.Close()
	if got := r1.Held(); got != 3 {
		t.Fatalf("Reserve(3) on an empty queue of 4: Held got %d, want 3", got)
	}
	if got := b.Room(); got != 1 {
		t.Errorf("Room with 3 held: got %d, want 1", got)
	}
	r2 := b.Reserve(5)
	defer r2.Close()
	if got := r2.Held(); got != 1 {
		t.Fatalf("Reserve(5) with 1 free: Held got %d, want 1", got)
	}
	r3 := b.Reserve(1)
	defer r3.Close()
	if got := r3.Held(); got != 0 {
		t.Fatalf("Reserve(1) with all held: Held got %d, want 0", got)
	}
	// Held room is not the reconciler's, nor an unreserved publisher's.
	if got := b.Offer(ev(100)); got != DroppedFull {
		t.Errorf("Offer into held room: got %v, want DroppedFull", got)
	}
	if got := b.Publish(ev(101)); got != DroppedFull {
		t.Errorf("Publish into held room: got %v, want DroppedFull", got)
	}
	for id := int64(1); id <= 3; id++ {
		if got := publishIn(t, r1, ev(id)); got != Queued {
			t.Errorf("r1.Publish(%d): got %v, want Queued", id, got)
		}
	}
	if got := r1.Held(); got != 0 {
		t.Errorf("r1.Held after 3 publishes: got %d, want 0", got)
	}
	if b.Len() != 3 || b.Room() != 0 {
		t.Errorf("3 published, 1 still held: Len %d Room %d, want 3, 0", b.Len(), b.Room())
	}
	r2.Close() // r2's event was a duplicate: its slot goes back unused
	if got := b.Room(); got != 1 {
		t.Errorf("Room after r2.Close: got %d, want 1", got)
	}
	if got := b.Offer(ev(4)); got != Queued {
		t.Errorf("Offer into given-back room: got %v, want Queued", got)
	}
	// Two events r3 had no room for: counted and logged as drops.
	r3.TurnedAway(2)
	if got, want := b.Dropped(ReasonQueueFull), uint64(3); got != want {
		t.Errorf("Dropped(queue_full): got %d, want %d (1 publish, 2 turned away)", got, want)
	}
	if got, want := b.Published(), uint64(4); got != want {
		t.Errorf("Published: got %d, want %d", got, want)
	}
	if got := logs.Lines(); len(got) != 1 || !strings.Contains(got[0], "mirror queue full") {
		t.Errorf("drop log: got %q, want one line", got)
	}
	r1.Close()
	r3.Close()
	for range b.Len() {
		<-b.Events()
	}
	assertAllRoomBack(t, b)
}

func TestReservationCloseTwiceGivesBackOnce(t *testing.T) {
	b, _ := newLogged(2)
	r := b.Reserve(2)
	r.Close()
	r.Close()
	if got := r.Held(); got != 0 {
		t.Errorf("Held after Close: got %d, want 0", got)
	}
	// A second give-back would make Room exceed the channel's capacity.
	if got, want := b.Room(), 2; got != want {
		t.Errorf("Room after two Closes: got %d, want %d", got, want)
	}
	assertAllRoomBack(t, b)
}

// TestReservationPublishAfterCloseIsPlain: a closed reservation holds no
// room, so its Publish must not take room another reservation holds.
func TestReservationPublishAfterCloseIsPlain(t *testing.T) {
	b, _ := newLogged(2)
	r := b.Reserve(2)
	r.Close()
	other := b.Reserve(2)
	if got := other.Held(); got != 2 {
		t.Fatalf("other.Held: got %d, want 2 (the closed reservation gave its room back)", got)
	}
	if got := publishIn(t, r, ev(1)); got != DroppedFull {
		t.Errorf("Publish after Close into room held by another: got %v, want DroppedFull", got)
	}
	if got := b.Dropped(ReasonQueueFull); got != 1 {
		t.Errorf("Dropped(queue_full): got %d, want 1 (counted as a plain Publish)", got)
	}
	if got := other.Held(); got != 2 {
		t.Errorf("other.Held after the closed reservation published: got %d, want 2", got)
	}
	for id := int64(2); id <= 3; id++ {
		if got := publishIn(t, other, ev(id)); got != Queued {
			t.Errorf("other.Publish(%d): got %v, want Queued", id, got)
		}
	}
	other.Close()
	<-b.Events()
	<-b.Events()
	assertAllRoomBack(t, b)
}

// TestReservationPublishBeyondHeld: more events than held slots is not an
// error; the extra ones are plain publishes.
func TestReservationPublishBeyondHeld(t *testing.T) {
	b, _ := newLogged(3)
	r := b.Reserve(1)
	defer r.Close()
	rest := b.Reserve(2)
	defer rest.Close()
	if got := publishIn(t, r, ev(1)); got != Queued {
		t.Errorf("first Publish, in the held slot: got %v, want Queued", got)
	}
	if got := publishIn(t, r, ev(2)); got != DroppedFull {
		t.Errorf("second Publish, beyond the held slot: got %v, want DroppedFull (the room is rest's)", got)
	}
	if got := b.Dropped(ReasonQueueFull); got != 1 {
		t.Errorf("Dropped(queue_full): got %d, want 1", got)
	}
	if got := rest.Held(); got != 2 {
		t.Errorf("rest.Held: got %d, want 2", got)
	}
	rest.Close()
	if got := publishIn(t, r, ev(3)); got != Queued {
		t.Errorf("Publish beyond held into free room: got %v, want Queued", got)
	}
	r.Close()
	<-b.Events()
	<-b.Events()
	assertAllRoomBack(t, b)
}

// TestReservationDuplicateUsesItsSlot: an event already queued uses up its
// held slot all the same, so the slot is neither lost nor given back twice.
func TestReservationDuplicateUsesItsSlot(t *testing.T) {
	b, _ := newLogged(4)
	if got := b.Publish(ev(1)); got != Queued {
		t.Fatalf("Publish(1): got %v, want Queued", got)
	}
	r := b.Reserve(2)
	if got := publishIn(t, r, ev(1)); got != AlreadyQueued {
		t.Errorf("Reservation.Publish of a queued id: got %v, want AlreadyQueued", got)
	}
	if got := r.Held(); got != 1 {
		t.Errorf("Held after the duplicate: got %d, want 1", got)
	}
	r.Close()
	if got, want := b.Room(), 3; got != want {
		t.Errorf("Room: got %d, want %d (1 queued, nothing held)", got, want)
	}
	<-b.Events()
	assertAllRoomBack(t, b)
}

// TestReservationPublishIntoTakenRoomNeverBlocks: a plain Publish that saw
// room just before a Reserve took it can fill the channel under a held
// slot. The held event is then dropped, never waited for.
func TestReservationPublishIntoTakenRoomNeverBlocks(t *testing.T) {
	b, _ := newLogged(1)
	r := b.Reserve(1)
	defer r.Close()
	if got := r.Held(); got != 1 {
		t.Fatalf("Held: got %d, want 1", got)
	}
	b.ch <- ev(99) // as the racing plain Publish would
	if got := publishIn(t, r, ev(2)); got != DroppedFull {
		t.Errorf("Reservation.Publish into a full channel: got %v, want DroppedFull", got)
	}
	if got := b.Dropped(ReasonQueueFull); got != 1 {
		t.Errorf("Dropped(queue_full): got %d, want 1", got)
	}
	if got := r.Held(); got != 0 {
		t.Errorf("Held: got %d, want 0 (the slot was used up)", got)
	}
	<-b.Events()
	assertAllRoomBack(t, b)
	if got := b.Room(); got != 1 {
		t.Errorf("Room after the worker took the event: got %d, want 1 (nothing still held)", got)
	}
}

func TestReserveOnClosedBus(t *testing.T) {
	b, _ := newLogged(4)
	b.Close()
	r := b.Reserve(2)
	if r == nil {
		t.Fatal("Reserve on a closed bus: got nil, want an empty Reservation")
	}
	defer r.Close()
	if got := r.Held(); got != 0 {
		t.Fatalf("Reserve on a closed bus: Held got %d, want 0", got)
	}
	if got := publishIn(t, r, ev(1)); got != DroppedClosed {
		t.Errorf("Publish on a closed bus: got %v, want DroppedClosed", got)
	}
	r.TurnedAway(2)
	if got := b.Dropped(ReasonClosed); got != 3 {
		t.Errorf("Dropped(shutdown): got %d, want 3 (1 publish, 2 turned away)", got)
	}
	if got := b.Dropped(ReasonQueueFull); got != 0 {
		t.Errorf("Dropped(queue_full): got %d, want 0", got)
	}
	r.Close()
	assertAllRoomBack(t, b)
}

func TestReserveNothing(t *testing.T) {
	b, logs := newLogged(4)
	for _, n := range []int{0, -3} {
		r := b.Reserve(n)
		if got := r.Held(); got != 0 {
			t.Errorf("Reserve(%d): Held got %d, want 0", n, got)
		}
		r.TurnedAway(n)
		r.Close()
	}
	if got := b.Dropped(ReasonQueueFull); got != 0 {
		t.Errorf("Dropped(queue_full) after TurnedAway(<=0): got %d, want 0", got)
	}
	if got := logs.Lines(); len(got) != 0 {
		t.Errorf("log: got %q, want nothing", got)
	}
	assertAllRoomBack(t, b)
}

func TestReserveRacesNeverOverbook(t *testing.T) {
	const capacity, callers = 64, 16
	b, _ := newLogged(capacity)
	var (
		held atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		all  []*Reservation
	)
	for range callers {
		wg.Go(func() {
			for range 100 {
				r := b.Reserve(3)
				held.Add(int64(r.Held()))
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got := held.Load(); got != capacity {
		t.Errorf("room held by racing callers: got %d, want exactly the capacity %d", got, capacity)
	}
	for _, r := range all {
		r.Close()
	}
	assertAllRoomBack(t, b)
	if got := b.Room(); got != capacity {
		t.Errorf("Room after every reservation closed: got %d, want %d", got, capacity)
	}
}

// TestReservationsGiveBackEverySlot runs many callers reserving, then
// publishing, meeting duplicates, returning early, publishing past their
// hold, closing twice, and racing Publish against Close on one
// reservation, while workers drain and (in one case) the bus closes.
// Whatever the mix, each slot goes back exactly once: the bus never holds
// more than its capacity or less than nothing, and once every reservation
// is closed and the channel drained, Room is Cap again.
func TestReservationsGiveBackEverySlot(t *testing.T) {
	for _, closeBus := range []bool{false, true} {
		name := "bus open"
		if closeBus {
			name = "bus closes midway"
		}
		t.Run(name, func(t *testing.T) {
			const capacity, callers, rounds = 16, 12, 300
			b, _ := newLogged(capacity)

			drained := make(chan struct{})
			go func() {
				defer close(drained)
				for e := range b.Events() {
					b.Done(e.Message.ID)
				}
			}()

			// The watcher samples the bus's count of held slots while
			// the callers run; it must stay within [0, capacity].
			stop := make(chan struct{})
			var bad atomic.Int64
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				for {
					select {
					case <-stop:
						return
					default:
					}
					runtime.Gosched()
					if n := b.reserved.Load(); n < 0 || n > capacity {
						bad.Store(n)
					}
				}
			}()

			var started atomic.Int64
			var wg sync.WaitGroup
			for c := range callers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(c), 1))
					for i := range rounds {
						started.Add(1)
						base := int64(c)<<32 | int64(i)<<8
						caller(rng, b, base)
					}
				})
			}
			if closeBus {
				for started.Load() < callers*rounds/2 {
					time.Sleep(time.Millisecond)
				}
				b.Close()
			}
			wg.Wait()
			close(stop)
			<-watched
			if !closeBus {
				b.Close()
			}
			<-drained

			if n := bad.Load(); n != 0 {
				t.Errorf("slots held by the bus went to %d, want always within [0, %d]", n, capacity)
			}
			if got := b.Len(); got != 0 {
				t.Fatalf("Len after draining: got %d, want 0", got)
			}
			assertAllRoomBack(t, b)
			if got := b.Room(); got != b.Cap() {
				t.Errorf("Room after every reservation closed: got %d, want Cap %d", got, b.Cap())
			}
		})
	}
}

// caller is one ingest-like use of a reservation, chosen at random; ids
// start at base, so that callers never collide unless they mean to.
func caller(rng *rand.Rand, b *Bus, base int64) {
	n := rng.IntN(6)
	r := b.Reserve(n)
	defer r.Close()
	switch rng.IntN(6) {
	case 0: // the save failed: return without publishing
		return
	case 1: // every held event published, then one more than held
		for k := range r.Held() + 1 {
			r.Publish(ev(base + int64(k)))
		}
	case 2: // some duplicates: the same id twice, the rest left to Close
		for k := range r.Held() / 2 {
			r.Publish(ev(base + int64(k)))
			r.Publish(ev(base + int64(k)))
		}
	case 3: // Publish racing Close on the same reservation
		var wg sync.WaitGroup
		for k := range r.Held() {
			wg.Go(func() { r.Publish(ev(base + int64(k))) })
		}
		wg.Go(r.Close)
		wg.Wait()
	case 4: // closed early, then published and closed again
		r.Close()
		r.Publish(ev(base))
		r.Close()
	default: // the turned-away ones counted, the held ones published
		r.TurnedAway(n - r.Held())
		for k := range r.Held() {
			r.Publish(ev(base + int64(k)))
		}
	}
}

// TestReservationPublishRacingClose puts many publishers and a Close on
// one reservation at once, over and over: every slot must go back once,
// whether a publisher used it or Close gave it back.
func TestReservationPublishRacingClose(t *testing.T) {
	const capacity, publishers, rounds = 64, 8, 500
	b, _ := newLogged(capacity)
	for round := range rounds {
		r := b.Reserve(capacity)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for p := range publishers {
			wg.Go(func() {
				<-start
				for k := range capacity / publishers {
					r.Publish(ev(int64(round)<<16 | int64(p)<<8 | int64(k)))
				}
			})
		}
		wg.Go(func() {
			<-start
			r.Close()
		})
		close(start)
		wg.Wait()
		r.Close()
		for range b.Len() {
			b.Done((<-b.Events()).Message.ID)
		}
		if got := b.reserved.Load(); got != 0 {
			t.Fatalf("round %d: slots held after Close: got %d, want 0", round, got)
		}
	}
	assertAllRoomBack(t, b)
}
