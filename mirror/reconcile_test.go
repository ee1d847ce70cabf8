package mirror

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/events"
	"igmirror/internal/testkit/mysqltest"
	"igmirror/sqlite"
)

// quiet discards the logs of tests that do not look at them.
var quiet = slog.New(slog.DiscardHandler)

// drain takes every queued event off bus (as a worker would, releasing
// each) and returns them in queue order.
func drain(bus *events.Bus) []events.MessageSaved {
	var out []events.MessageSaved
	for {
		select {
		case ev := <-bus.Events():
			out = append(out, ev)
			bus.Done(ev.Message.ID)
		default:
			return out
		}
	}
}

func eventIDs(evs []events.MessageSaved) []int64 {
	out := make([]int64, len(evs))
	for i := range evs {
		out[i] = evs[i].Message.ID
	}
	return out
}

// fixture stores one message in each mirror state the reconciler must
// tell apart, in id order, and returns their ids by name.
func fixture(t *testing.T, s *sqlite.Store, maxAttempts int) map[string]int64 {
	t.Helper()
	ids := map[string]int64{}
	for i, c := range []struct {
		name     string
		status   domain.MirrorStatus
		attempts int
	}{
		{"mirrored", domain.MirrorMirrored, 1},
		{"droppedNew", domain.MirrorDropped, 0},
		{"failedOnce", domain.MirrorFailed, 1},
		{"failedOut", domain.MirrorFailed, maxAttempts},
		{"pending", domain.MirrorPending, 0},
		{"disabled", domain.MirrorDisabled, 0},
		// Turned away by a full queue after many tries (an operator's
		// resync, restarts): the CRM never refused it, so it is offered.
		{"droppedTried", domain.MirrorDropped, maxAttempts + 2},
	} {
		m := newMessage(i, "u1", c.name)
		if c.status == domain.MirrorDisabled {
			m.MirrorStatus = c.status
		}
		saved := mustSave(t, s, m)
		ids[c.name] = saved[0].ID
		if c.status != domain.MirrorDisabled {
			setState(t, s, saved[0].ID, c.status, c.attempts)
		}
	}
	return ids
}

// TestReconcilerPeriodicPass runs the reconciler and takes what its
// periodic pass offers: dropped and failed messages under the attempt
// limit, oldest first, claimed (pending, this instance's) and, where an
// attempt was made, marked for a CRM check first.
func TestReconcilerPeriodicPass(t *testing.T) {
	s := mustOpenStore(t)
	bus := events.New(16, quiet)
	rec := NewReconciler(ReconcilerConfig{Interval: 20 * time.Millisecond, MaxAttempts: 3, StaleAfter: time.Hour, Logger: quiet}, s, bus)
	// Stored after the reconciler started: the start-up pass leaves them.
	ids := fixture(t, s, 3)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually(t, 5*time.Second, "an offer", func() bool { return bus.Len() == 3 })
	cancel()
	<-done
	evs := drain(bus)
	want := []int64{ids["droppedNew"], ids["failedOnce"], ids["droppedTried"]}
	if got := eventIDs(evs); !slices.Equal(got, want) {
		t.Fatalf("offered: got %v, want %v (ids %v)", got, want, ids)
	}
	// The attempts so far decide, at the worker's claim, whether the CRM
	// is looked at first: none for droppedNew, some for the other two.
	for i, wantTried := range []bool{false, true, true} {
		if tried := evs[i].Message.MirrorAttempts > 0; tried != wantTried {
			t.Errorf("event %d: got %d attempts before, want tried=%v", evs[i].Message.ID, evs[i].Message.MirrorAttempts, wantTried)
		}
		if got := mustGet(t, s, evs[i].Message.ID); got.MirrorStatus != domain.MirrorPending || got.MirrorOwner != s.Lease().Owner {
			t.Errorf("event %d: stored as %s owned by %q, want pending and claimed by %q", evs[i].Message.ID, got.MirrorStatus, got.MirrorOwner, s.Lease().Owner)
		}
	}
	if got := rec.Offered(); got != 3 {
		t.Errorf("offered count: got %d, want 3", got)
	}
}

// TestReconcilerStartupPass offers the messages a previous run left
// pending, and nothing else, then stops when the interval is 0.
func TestReconcilerStartupPass(t *testing.T) {
	var ids map[string]int64
	s := previousRun(t, func(s *sqlite.Store) { ids = fixture(t, s, 3) })
	bus := events.New(16, quiet)
	rec := NewReconciler(ReconcilerConfig{Interval: 0, MaxAttempts: 3, Logger: quiet}, s, bus)
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(context.Background()) }()
	<-done // if Run with interval 0 did not return after the start-up pass, go test's -timeout fails the test
	if got, want := eventIDs(drain(bus)), []int64{ids["pending"]}; !slices.Equal(got, want) {
		t.Errorf("offered: got %v, want %v", got, want)
	}
}

// TestReconcilerStalePending offers a pending message whose event was
// lost once it is older than StaleAfter.
func TestReconcilerStalePending(t *testing.T) {
	s := mustOpenStore(t)
	bus := events.New(16, quiet)
	rec := NewReconciler(ReconcilerConfig{Interval: 20 * time.Millisecond, MaxAttempts: 3, StaleAfter: 50 * time.Millisecond, Logger: quiet}, s, bus)
	m := mustSave(t, s, newMessage(0, "u1", "lost event"))[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 5*time.Second, "the stale message offered", func() bool { return bus.Len() == 1 })
	if got := eventIDs(drain(bus)); !slices.Equal(got, []int64{m.ID}) {
		t.Errorf("offered: got %v, want [%d]", got, m.ID)
	}
}

func TestReconcilerStaleAfterDefault(t *testing.T) {
	for _, tc := range []struct {
		interval, want time.Duration
	}{
		{0, time.Minute},
		{200 * time.Millisecond, 200 * time.Millisecond},
		{30 * time.Second, 30 * time.Second},
		{10 * time.Minute, time.Minute},
	} {
		r := NewReconciler(ReconcilerConfig{Interval: tc.interval}, nil, nil)
		if r.cfg.StaleAfter != tc.want {
			t.Errorf("interval %s: got stale after %s, want %s", tc.interval, r.cfg.StaleAfter, tc.want)
		}
	}
}

// TestReconcilerOffersOnlyWhileTheQueueHasRoom fills a small queue and
// checks that the reconciler stops at the first message that does not
// fit, without pushing into the full queue (which would count as a drop
// of the webhook's), and picks up from there once there is room.
func TestReconcilerOffersOnlyWhileTheQueueHasRoom(t *testing.T) {
	s := mustOpenStore(t)
	var ids []int64
	for i := range 5 {
		m := newMessage(i, "u1", fmt.Sprint("dropped ", i))
		m.MirrorStatus = domain.MirrorDropped
		ids = append(ids, mustSave(t, s, m)[0].ID)
	}
	bus := events.New(3, quiet)
	rec := NewReconciler(ReconcilerConfig{MaxAttempts: 3, Logger: quiet}, s, bus)
	q := domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDropped, domain.MirrorFailed}, MaxAttempts: 3}
	ctx := context.Background()

	res, err := rec.Offer(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if res != (OfferResult{Offered: 3, Full: true, StoppedAt: ids[3]}) {
		t.Errorf("first offer: got %+v, want 3 offered, full at %d", res, ids[3])
	}
	// Only what was offered was claimed: the rest are still dropped.
	for i, want := range []domain.MirrorStatus{domain.MirrorPending, domain.MirrorPending, domain.MirrorPending, domain.MirrorDropped, domain.MirrorDropped} {
		if got := mustGet(t, s, ids[i]).MirrorStatus; got != want {
			t.Errorf("message %d after the offer: got %s, want %s", i, got, want)
		}
	}
	if got := bus.Dropped(events.ReasonQueueFull); got != 0 {
		t.Errorf("bus drops: got %d, want 0", got)
	}
	// Offering again while the three are still queued changes nothing.
	if res, err := rec.Offer(ctx, q); err != nil || res.Offered != 0 || !res.Full {
		t.Errorf("offer into a full queue: got %+v, %v; want nothing offered, full", res, err)
	}
	if got := eventIDs(drain(bus)); !slices.Equal(got, ids[:3]) {
		t.Errorf("queued: got %v, want %v", got, ids[:3])
	}
	// The first three are claimed (pending, in this instance's mirror):
	// the next offer takes the last two.
	res, err = rec.Offer(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(drain(bus)); res.Offered != 2 || res.Full || !slices.Equal(got, ids[3:]) {
		t.Errorf("second offer: got %v (%+v), want %v offered and room left", got, res, ids[3:])
	}
	if got := bus.Dropped(events.ReasonQueueFull); got != 0 {
		t.Errorf("bus drops: got %d, want 0", got)
	}
}

// TestResyncDefersOverTriedFailures resyncs failed messages that have used
// up their attempts into a queue too small for them: what it turns away
// is marked dropped and the next periodic pass offers it.
func TestResyncDefersOverTriedFailures(t *testing.T) {
	s := mustOpenStore(t)
	ctx := context.Background()
	var ids []int64
	for i := range 4 {
		id := mustSave(t, s, newMessage(i, "u1", fmt.Sprint("failed ", i)))[0].ID
		setState(t, s, id, domain.MirrorFailed, 3)
		ids = append(ids, id)
	}
	bus := events.New(2, quiet)
	rec := NewReconciler(ReconcilerConfig{MaxAttempts: 3, Logger: quiet}, s, bus)
	periodic := domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDropped, domain.MirrorFailed}, MaxAttempts: 3}
	if res, err := rec.Offer(ctx, periodic); err != nil || res.Offered != 0 {
		t.Fatalf("periodic offer of over-tried failures: got %+v, %v; want none", res, err)
	}

	offered, turnedAway, err := rec.Resync(ctx, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorFailed}})
	if err != nil {
		t.Fatal(err)
	}
	if offered != 2 || turnedAway != 2 {
		t.Errorf("resync: got offered %d, turned away %d; want 2, 2", offered, turnedAway)
	}
	for i, want := range []domain.MirrorStatus{domain.MirrorPending, domain.MirrorPending, domain.MirrorDropped, domain.MirrorDropped} {
		if got := mustGet(t, s, ids[i]).MirrorStatus; got != want {
			t.Errorf("message %d after resync: got %s, want %s", i, got, want)
		}
	}
	if got := eventIDs(drain(bus)); !slices.Equal(got, ids[:2]) {
		t.Errorf("resync queued: got %v, want %v", got, ids[:2])
	}
	res, err := rec.Offer(ctx, periodic)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(drain(bus)); res.Offered != 2 || !slices.Equal(got, ids[2:]) {
		t.Errorf("periodic offer after resync: got %v (%+v), want %v", got, res, ids[2:])
	}
}

// TestMaxAttempts runs pool and reconciler against a CRM without the
// table: each pass fails the message again, until MIRROR_MAX_ATTEMPTS;
// then it stays failed, and only a resync tries it once more.
func TestMaxAttempts(t *testing.T) {
	crm := mysqltest.New(t)
	logs := &logBuffer{}
	sink, err := OpenMySQL(MySQLConfig{
		Host: crm.Host, Port: crm.Port, User: crm.User, Password: crm.Password,
		Database: crm.Name, Table: "missing", TLS: "false", Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	r := newRig(t, sink, logs, PoolConfig{})
	rec := NewReconciler(ReconcilerConfig{Interval: 20 * time.Millisecond, MaxAttempts: 3, Logger: logs.Logger()}, r.store, r.bus)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	m := r.publish(t, newMessage(0, "u1", "never fits"))[0]
	eventually(t, 10*time.Second, "three attempts", func() bool {
		got := mustGet(t, r.store, m.ID)
		return got.MirrorAttempts == 3 && got.MirrorStatus == domain.MirrorFailed
	})
	periodic := domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDropped, domain.MirrorFailed}, MaxAttempts: 3}
	if cands, err := r.store.ClaimCandidates(ctx, periodic); err != nil || len(cands) != 0 {
		t.Errorf("candidates after the last attempt: got %d, %v; want none", len(cands), err)
	}
	cancel()
	<-done

	// The worker lets go of the event just after recording the failure.
	eventually(t, 5*time.Second, "the resync to offer it", func() bool {
		offered, _, err := rec.Resync(context.Background(), domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorFailed}})
		if err != nil {
			t.Fatalf("resync: %v", err)
		}
		return offered == 1
	})
	eventually(t, 5*time.Second, "the resync's attempt", func() bool {
		got := mustGet(t, r.store, m.ID)
		return got.MirrorAttempts == 4 && got.MirrorStatus == domain.MirrorFailed
	})
}

// TestDroppedMessagesReachTheCRM fills a tiny queue while the CRM is away:
// what the queue turns away is recorded as dropped, and once the CRM is
// back the reconciler brings every message over, once.
func TestDroppedMessagesReachTheCRM(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	proxy.SetRefuse(true)
	logs := &logBuffer{}
	sink := sinkTo(t, crm, proxy.Host(), proxy.Port(), time.Second, nil)
	store := mustOpenStore(t)
	bus := events.New(2, logs.Logger())
	pool := NewPool(PoolConfig{Workers: 1, BatchSize: 1, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: logs.Logger()}, bus, sink, store, nil)
	pool.Start()
	t.Cleanup(func() { pool.Stop(5 * time.Second) })
	rec := NewReconciler(ReconcilerConfig{Interval: 30 * time.Millisecond, MaxAttempts: 3, StaleAfter: time.Hour, Logger: logs.Logger()}, store, bus)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	saved := mustSave(t, store, someMessages("u1", 10)...)
	var dropped []int64
	for i := range saved {
		if bus.Publish(events.MessageSaved{Message: saved[i]}) == events.DroppedFull {
			dropped = append(dropped, saved[i].ID)
		}
	}
	store.MarkDropped(dropped...)
	// One in the worker's hands, two queued: the rest were turned away.
	if len(dropped) < 7 {
		t.Fatalf("dropped: got %d, want at least 7", len(dropped))
	}
	eventually(t, 5*time.Second, "drop marks", func() bool {
		return mustGet(t, store, dropped[len(dropped)-1]).MirrorStatus == domain.MirrorDropped
	})

	proxy.SetRefuse(false)
	eventually(t, 15*time.Second, "every message mirrored", func() bool {
		for i := range saved {
			if mustGet(t, store, saved[i].ID).MirrorStatus != domain.MirrorMirrored {
				return false
			}
		}
		return true
	})
	if diff := mysqltest.DiffCounts(crm.RowCounts(t), wantCounts(saved)); diff != "" {
		t.Fatalf("crm: %s", diff)
	}
	if got := rec.Offered(); got < uint64(len(dropped)) {
		t.Errorf("reconciler offers: got %d, want at least %d", got, len(dropped))
	}
}

// TestReconcilerStartupBacklogLargerThanQueue: a backlog of pending
// messages several times the queue's size is offered whole, in id order,
// each once, as a consumer frees room.
func TestReconcilerStartupBacklogLargerThanQueue(t *testing.T) {
	const n = 25
	var want []int64
	s := previousRun(t, func(s *sqlite.Store) {
		for i := range n {
			want = append(want, mustSave(t, s, newMessage(i, "u1", fmt.Sprintf("backlog %d", i)))[0].ID)
		}
	})
	bus := events.New(4, quiet)
	rec := NewReconciler(ReconcilerConfig{Interval: 0, MaxAttempts: 3, Logger: quiet}, s, bus)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(ctx) }()

	var got []int64
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case ev := <-bus.Events():
			got = append(got, ev.Message.ID)
			bus.Done(ev.Message.ID)
		case <-deadline:
			t.Fatalf("offered %d of %d before the deadline: %v", len(got), n, got)
		}
	}
	<-done // if the start-up pass did not end once the backlog was offered, go test's -timeout fails the test
	if !slices.Equal(got, want) {
		t.Errorf("offered: got %v, want %v", got, want)
	}
	if extra := drain(bus); len(extra) != 0 {
		t.Errorf("offered again: %v", eventIDs(extra))
	}
	if got := rec.Offered(); got != n {
		t.Errorf("offered count: got %d, want %d", got, n)
	}
}

// TestReconcilerPeriodicPassWaitsForRoom: a periodic pass over a backlog
// several times the queue's size (the CRM was away) does not stop at the
// first full queue, which would leave one queueful per interval: it
// offers every candidate, in id order, each once, as a slow consumer
// (one that takes events only from a full queue) frees room.
func TestReconcilerPeriodicPassWaitsForRoom(t *testing.T) {
	s := mustOpenStore(t)
	const n = 25
	want := mustSaveIn(t, s, domain.MirrorDropped, n)
	bus := events.New(4, quiet)
	rec := NewReconciler(ReconcilerConfig{Interval: time.Hour, MaxAttempts: 3, StaleAfter: time.Hour, Logger: quiet}, s, bus)
	done := make(chan struct{})
	go func() { defer close(done); rec.reconcile(context.Background()) }()

	var got []int64
	passEnded := false
	deadline := time.Now().Add(10 * time.Second)
	for !passEnded {
		for bus.Len() < bus.Cap() && !passEnded {
			select {
			case <-done:
				passEnded = true
			case <-time.After(time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("one pass offered %d of %d before the deadline: %v", len(got), n, got)
			}
		}
		got = append(got, eventIDs(drain(bus))...)
	}
	if !slices.Equal(got, want) {
		t.Errorf("one pass offered %v, want all %d in order: %v", got, n, want)
	}
	if got := bus.Dropped(events.ReasonQueueFull); got != 0 {
		t.Errorf("bus drops: got %d, want 0 (the pass never pushes into a full queue)", got)
	}
}

// TestReconcilerPassWaitingForRoomEndsWithContext: while nothing drains
// the queue (the CRM is down), a pass fills it once and then waits; it
// ends as soon as its context does.
func TestReconcilerPassWaitingForRoomEndsWithContext(t *testing.T) {
	s := mustOpenStore(t)
	mustSaveIn(t, s, domain.MirrorDropped, 10)
	bus := events.New(4, quiet)
	rec := NewReconciler(ReconcilerConfig{Interval: time.Hour, MaxAttempts: 3, Logger: quiet}, s, bus)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.reconcile(ctx) }()
	eventually(t, 5*time.Second, "the queue filled", func() bool { return bus.Len() == 4 })
	// Still waiting for room: freeing half the queue brings two more.
	if got := len(drain(bus)); got != 4 {
		t.Fatalf("drained %d, want 4", got)
	}
	eventually(t, 5*time.Second, "the pass to go on once there is room", func() bool { return bus.Len() == 4 })
	cancel()
	<-done // if the pass did not end with its context, go test's -timeout fails the test
	if got := rec.Offered(); got != 8 {
		t.Errorf("offered: got %d, want two queuefuls (8)", got)
	}
}

// TestReconcilerPassStopsAtFullQueueWhileCRMNotConnected: with the CRM
// not connected (down, or refusing every row), a periodic pass offers one
// queueful and ends, leaving the rest to the next interval instead of
// pushing every failed message through a CRM that refuses them.
func TestReconcilerPassStopsAtFullQueueWhileCRMNotConnected(t *testing.T) {
	s := mustOpenStore(t)
	mustSaveIn(t, s, domain.MirrorFailed, 10)
	bus := events.New(4, quiet)
	connected := false
	rec := NewReconciler(ReconcilerConfig{Interval: time.Hour, MaxAttempts: 3, Logger: quiet,
		Connected: func() bool { return connected }}, s, bus)
	done := make(chan struct{})
	go func() { defer close(done); rec.reconcile(context.Background()) }()
	<-done // if the pass waited for room while the CRM is not connected, go test's -timeout fails the test
	if got := rec.Offered(); got != 4 {
		t.Errorf("offered: got %d, want one queueful (4)", got)
	}
	if got := bus.Dropped(events.ReasonQueueFull); got != 0 {
		t.Errorf("bus drops: got %d, want 0", got)
	}
}

// mustSaveIn stores n messages in the given mirror state, one at a time,
// and returns their ids in order.
func mustSaveIn(t *testing.T, s *sqlite.Store, status domain.MirrorStatus, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range n {
		ids[i] = mustSave(t, s, newMessage(i, "u1", fmt.Sprintf("%s message %d", status, i)))[0].ID
		setState(t, s, ids[i], status, 0)
	}
	return ids
}

// TestResyncCountsTurnedAwayOnce: messages the resync claimed but the
// queue then turned away (here: the bus closed between the claim and the
// offer) are marked dropped and counted once, and the deferral that
// follows starts after them instead of counting them again.
func TestResyncCountsTurnedAwayOnce(t *testing.T) {
	s := mustOpenStore(t)
	ids := mustSaveIn(t, s, domain.MirrorFailed, 4)
	bus := events.New(8, quiet)
	bus.Close() // Room() still says 8: the claim happens, the offer is refused
	rec := NewReconciler(ReconcilerConfig{MaxAttempts: 3, Logger: quiet}, s, bus)
	offered, turnedAway, err := rec.Resync(context.Background(), domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorPending, domain.MirrorFailed}})
	if err != nil {
		t.Fatal(err)
	}
	if offered != 0 || turnedAway != 4 {
		t.Errorf("resync into a closed queue: got offered %d, turned away %d; want 0, 4", offered, turnedAway)
	}
	for _, id := range ids {
		eventually(t, 5*time.Second, "the turned-away message marked dropped", func() bool {
			m := mustGet(t, s, id)
			return m.MirrorStatus == domain.MirrorDropped && m.MirrorOwner == s.Lease().Owner
		})
	}
}
