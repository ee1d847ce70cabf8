package events

import (
	"encoding/json"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/check"
)

func ev(id int64) MessageSaved { return MessageSaved{Message: domain.Message{ID: id}} }

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = check.LogBuffer

func newLogged(capacity int) (*Bus, *syncBuffer) {
	buf := &syncBuffer{}
	return New(capacity, slog.New(slog.NewJSONHandler(buf, nil))), buf
}

// publish calls b.Publish and fails the test if it does not return: the
// bus must never make a publisher wait.
func publish(t *testing.T, b *Bus, e MessageSaved) Outcome {
	t.Helper()
	done := make(chan Outcome, 1)
	go func() { done <- b.Publish(e) }()
	select {
	case o := <-done:
		return o
	case <-time.After(10 * time.Second):
		t.Fatalf("Publish(%d) blocked", e.Message.ID)
		return 0
	}
}

func TestPublishNeverBlocksWhenFull(t *testing.T) {
	b, _ := newLogged(2)
	for i, want := range []Outcome{Queued, Queued, DroppedFull, DroppedFull} {
		if got := publish(t, b, ev(int64(i+1))); got != want {
			t.Errorf("publish %d: got %v, want %v", i+1, got, want)
		}
	}
	if got, want := b.Published(), uint64(2); got != want {
		t.Errorf("Published: got %d, want %d", got, want)
	}
	if got, want := b.Dropped(ReasonQueueFull), uint64(2); got != want {
		t.Errorf("Dropped(queue_full): got %d, want %d", got, want)
	}
	if got := b.Dropped(ReasonClosed); got != 0 {
		t.Errorf("Dropped(shutdown): got %d, want 0", got)
	}
	if b.Len() != 2 || b.Cap() != 2 || b.Room() != 0 {
		t.Errorf("Len, Cap, Room: got %d, %d, %d, want 2, 2, 0", b.Len(), b.Cap(), b.Room())
	}

	// A dropped message is not held as in flight: once there is room it
	// can be offered again.
	got := <-b.Events()
	if got.Message.ID != 1 {
		t.Fatalf("first event: got id %d, want 1 (FIFO)", got.Message.ID)
	}
	if o := publish(t, b, ev(3)); o != Queued {
		t.Errorf("re-offer of a dropped message: got %v, want Queued", o)
	}
	if b.Room() != 0 || b.Len() != 2 {
		t.Errorf("after re-offer: Len %d Room %d, want 2, 0", b.Len(), b.Room())
	}
}

func TestAlreadyQueuedUntilDone(t *testing.T) {
	b, _ := newLogged(4)
	if o := publish(t, b, ev(7)); o != Queued {
		t.Fatalf("first publish: got %v, want Queued", o)
	}
	if o := publish(t, b, ev(7)); o != AlreadyQueued {
		t.Errorf("while queued: got %v, want AlreadyQueued", o)
	}
	<-b.Events() // a worker takes it: still in its hands
	if o := publish(t, b, ev(7)); o != AlreadyQueued {
		t.Errorf("while in a worker's hands: got %v, want AlreadyQueued", o)
	}
	if b.Len() != 0 {
		t.Errorf("Len: got %d, want 0 (no second copy queued)", b.Len())
	}
	b.Done(7)
	if o := publish(t, b, ev(7)); o != Queued {
		t.Errorf("after Done: got %v, want Queued", o)
	}
	if got, want := b.Published(), uint64(2); got != want {
		t.Errorf("Published: got %d, want %d (AlreadyQueued is not counted)", got, want)
	}
	if got := b.Dropped(ReasonQueueFull) + b.Dropped(ReasonClosed); got != 0 {
		t.Errorf("Dropped: got %d, want 0", got)
	}
}

func TestPublishAfterClose(t *testing.T) {
	b, logs := newLogged(4)
	publish(t, b, ev(1))
	b.Close()
	b.Close() // twice is fine
	if o := publish(t, b, ev(2)); o != DroppedClosed {
		t.Errorf("after Close: got %v, want DroppedClosed", o)
	}
	// Logged like any drop, and not as a full queue.
	if got := logs.Count("events dropped during shutdown"); got != 1 {
		t.Errorf("shutdown drop log lines: got %d, want 1:\n%s", got, strings.Join(logs.Lines(), "\n"))
	}
	if got := logs.Count("mirror queue full"); got != 0 {
		t.Errorf("queue-full log lines after Close: got %d, want 0", got)
	}
	if got, want := b.Dropped(ReasonClosed), uint64(1); got != want {
		t.Errorf("Dropped(shutdown): got %d, want %d", got, want)
	}
	if got := b.Dropped(ReasonQueueFull); got != 0 {
		t.Errorf("Dropped(queue_full): got %d, want 0", got)
	}
	// The workers still drain what was queued, then see the channel closed.
	var ids []int64
	for e := range b.Events() {
		ids = append(ids, e.Message.ID)
	}
	if len(ids) != 1 || ids[0] != 1 {
		t.Errorf("drained after Close: got %v, want [1]", ids)
	}
}

// TestPublishRacingClose runs publishers against Close under -race: no
// panic (send on a closed channel), and every offer is accounted for.
func TestPublishRacingClose(t *testing.T) {
	b, _ := newLogged(16)
	const publishers, each = 8, 500
	var drained atomic.Uint64
	consumer := make(chan struct{})
	go func() {
		defer close(consumer)
		for e := range b.Events() {
			drained.Add(1)
			b.Done(e.Message.ID)
		}
	}()
	var (
		wg     sync.WaitGroup
		counts [4]atomic.Uint64
	)
	start := make(chan struct{})
	for p := range publishers {
		wg.Go(func() {
			<-start
			for i := range each {
				o := b.Publish(ev(int64(p*each + i + 1)))
				counts[o].Add(1)
			}
		})
	}
	close(start)
	// Close in the middle of the publishing, not before or after it.
	for counts[Queued].Load()+counts[DroppedFull].Load() < 100 {
		runtime.Gosched()
	}
	b.Close()
	wg.Wait()
	<-consumer

	total := counts[Queued].Load() + counts[DroppedFull].Load() + counts[DroppedClosed].Load()
	if total != publishers*each || counts[AlreadyQueued].Load() != 0 {
		t.Errorf("outcomes: %d queued + %d full + %d closed + %d already = %d, want %d distinct offers",
			counts[Queued].Load(), counts[DroppedFull].Load(), counts[DroppedClosed].Load(), counts[AlreadyQueued].Load(),
			total, publishers*each)
	}
	if got, want := b.Published(), counts[Queued].Load(); got != want {
		t.Errorf("Published: got %d, want %d", got, want)
	}
	if got, want := drained.Load(), counts[Queued].Load(); got != want {
		t.Errorf("drained: got %d, want every queued event (%d)", got, want)
	}
	if got, want := b.Dropped(ReasonQueueFull), counts[DroppedFull].Load(); got != want {
		t.Errorf("Dropped(queue_full): got %d, want %d", got, want)
	}
	if got, want := b.Dropped(ReasonClosed), counts[DroppedClosed].Load(); got != want {
		t.Errorf("Dropped(shutdown): got %d, want %d", got, want)
	}
	if o := b.Publish(ev(1 << 40)); o != DroppedClosed {
		t.Errorf("after the race: got %v, want DroppedClosed", o)
	}
}

func TestDropLogIsRateLimited(t *testing.T) {
	b, logs := newLogged(1)
	publish(t, b, ev(1))
	for i := range 1000 {
		if o := b.Publish(ev(int64(i + 2))); o != DroppedFull {
			t.Fatalf("publish %d: got %v, want DroppedFull", i+2, o)
		}
	}
	lines := logs.Lines()
	if len(lines) != 1 {
		t.Fatalf("1000 drops logged %d lines, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	first := decode(t, lines[0])
	if first["level"] != "WARN" || first["dropped_since_last_log"] != 1.0 || first["dropped_total"] != 1.0 || first["capacity"] != 1.0 {
		t.Errorf("first drop line: got %v", first)
	}

	// When the interval has passed, the next drop logs how many went
	// unlogged in between.
	b.logMu.Lock()
	b.fullLog.last = time.Now().Add(-b.logEvery)
	b.logMu.Unlock()
	b.Publish(ev(5000))
	lines = logs.Lines()
	if len(lines) != 2 {
		t.Fatalf("after the interval: %d lines, want 2", len(lines))
	}
	second := decode(t, lines[1])
	if second["dropped_since_last_log"] != 1000.0 || second["dropped_total"] != 1001.0 {
		t.Errorf("second drop line: got since %v total %v, want 1000, 1001",
			second["dropped_since_last_log"], second["dropped_total"])
	}
}

func decode(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	return m
}

// TestOfferDoesNotCountDrops: a re-offer turned away by a full queue is not
// a lost webhook event, so neither the drop counter nor the log moves.
func TestOfferDoesNotCountDrops(t *testing.T) {
	b, logs := newLogged(1)
	if got := b.Offer(ev(1)); got != Queued {
		t.Fatalf("first offer: got %v, want Queued", got)
	}
	if got := b.Offer(ev(1)); got != AlreadyQueued {
		t.Fatalf("same id again: got %v, want AlreadyQueued", got)
	}
	if got := b.Offer(ev(2)); got != DroppedFull {
		t.Fatalf("offer into a full queue: got %v, want DroppedFull", got)
	}
	if got := b.Dropped(ReasonQueueFull); got != 0 {
		t.Errorf("dropped after a refused offer: got %d, want 0", got)
	}
	if got := strings.Join(logs.Lines(), ""); got != "" {
		t.Errorf("log after a refused offer: got %q, want nothing", got)
	}
	if got := b.Publish(ev(3)); got != DroppedFull {
		t.Fatalf("publish into a full queue: got %v, want DroppedFull", got)
	}
	if got := b.Dropped(ReasonQueueFull); got != 1 {
		t.Errorf("dropped after a refused publish: got %d, want 1", got)
	}
	if got := b.Published(); got != 1 {
		t.Errorf("published: got %d, want 1", got)
	}
}
