package mirror

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/events"
	"igmirror/internal/testkit/mysqltest"
)

func someMessages(user string, n int) []domain.Message {
	out := make([]domain.Message, n)
	for i := range out {
		out[i] = newMessage(i, user, fmt.Sprintf("message %d from %s", i, user))
	}
	return out
}

func TestPoolMirrorsEveryMessageOnce(t *testing.T) {
	crm := mysqltest.New(t)
	r := newRig(t, sinkTo(t, crm, crm.Host, crm.Port, 5*time.Second, nil), &logBuffer{}, PoolConfig{BatchSize: 7})
	msgs := someMessages("u1", 20)
	out := newMessage(20, "u1", "")
	out.Direction, out.SenderID, out.RecipientID = domain.Outbound, "17841400000000001", "u1"
	out.Attachments = `[{"type":"image","url":"https://cdn.example/x.jpg"}]`
	msgs = append(msgs, out)
	saved := r.publish(t, msgs...)
	r.waitStatus(t, 10*time.Second, domain.MirrorMirrored, saved...)

	if diff := mysqltest.DiffCounts(crm.RowCounts(t), wantCounts(saved)); diff != "" {
		t.Fatalf("crm: %s", diff)
	}
	if got := crm.RowCounts(t)[mysqltest.RowKey{UserID: "u1", Direction: "out", Message: "[image]", CreatedAt: t0.Add(20 * time.Second)}]; got != 1 {
		t.Errorf("outbound attachment row: got %d, want 1", got)
	}
	for _, m := range saved {
		got := mustGet(t, r.store, m.ID)
		if got.MirrorAttempts != 1 || got.MirroredAt == nil || got.MirrorDegraded {
			t.Errorf("message %d: got attempts %d, mirrored_at %v, degraded %v; want 1, set, false",
				m.ID, got.MirrorAttempts, got.MirroredAt, got.MirrorDegraded)
		}
	}
	if got, want := r.pool.Count(OutcomeOK), uint64(len(saved)); got != want {
		t.Errorf("ok count: got %d, want %d", got, want)
	}
	if got := r.pool.Status().State; got != StateConnected {
		t.Errorf("state: got %s, want connected", got)
	}
}

// TestPoolPermanentError checks that a refusal that only an operator can
// fix fails the messages at once, without retries, keeps the error on
// each, and is logged once however many messages hit it.
func TestPoolPermanentError(t *testing.T) {
	crm := mysqltest.New(t)
	logs := &logBuffer{}
	sink, err := OpenMySQL(MySQLConfig{
		Host: crm.Host, Port: crm.Port, User: crm.User, Password: crm.Password,
		Database: crm.Name, Table: "no_such_table", TLS: "false", Timeout: 5 * time.Second,
		Logger: logs.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	r := newRig(t, sink, logs, PoolConfig{BatchSize: 4})

	var all []domain.Message
	for round := range 3 {
		saved := r.publish(t, someMessages(fmt.Sprintf("u%d", round), 10)...)
		r.waitStatus(t, 10*time.Second, domain.MirrorFailed, saved...)
		all = append(all, saved...)
	}
	for _, m := range all {
		got := mustGet(t, r.store, m.ID)
		if got.MirrorAttempts != 1 || !strings.HasPrefix(got.MirrorLastError, "mysql 1146:") {
			t.Errorf("message %d: got attempts %d, last error %q; want 1, mysql 1146", m.ID, got.MirrorAttempts, got.MirrorLastError)
		}
	}
	if got := r.pool.Retried(); got != 0 {
		t.Errorf("retried: got %d, want 0", got)
	}
	if got, want := r.pool.Count(OutcomePermanent), uint64(len(all)); got != want {
		t.Errorf("permanent count: got %d, want %d", got, want)
	}
	st := r.pool.Status()
	if st.State != StateMisconfigure || st.Connected || !strings.Contains(st.LastError, "1146") {
		t.Errorf("status: got %+v, want misconfigured with the 1146 error", st)
	}
	if got := logs.Count("crm mirror refused by the server"); got != 1 {
		t.Errorf("state log lines: got %d, want 1\n%s", got, logs)
	}
	if got := crm.Count(t); got != 0 {
		t.Errorf("crm rows: got %d, want 0", got)
	}
}

// TestMonitorNoticesAnIdleCRMGoingAway: with no message flowing, a CRM
// that stops answering is reported unreachable within a ping or two, and
// connected again once it answers.
func TestMonitorNoticesAnIdleCRMGoingAway(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	logs := &logBuffer{}
	r := newRig(t, sinkTo(t, crm, proxy.Host(), proxy.Port(), time.Second, logs.Logger()), logs,
		PoolConfig{PingInterval: 50 * time.Millisecond})
	eventually(t, 5*time.Second, "connected", func() bool { return r.pool.Status().State == StateConnected })

	proxy.SetRefuse(true)
	proxy.ResetAll()
	eventually(t, 5*time.Second, "unreachable with no message sent", func() bool {
		return r.pool.Status().State == StateUnreachable
	})
	if got := logs.Count("crm mirror unreachable"); got != 1 {
		t.Errorf("unreachable log lines: got %d, want 1", got)
	}
	proxy.SetRefuse(false)
	eventually(t, 5*time.Second, "connected again", func() bool { return r.pool.Status().State == StateConnected })
}

// TestStopPastTheDrainTimeRecordsNoPhantomAttempts: events still queued
// when the drain time runs out were never sent to the CRM, so they stay
// pending with no attempt recorded; only the batch in flight has one.
func TestStopPastTheDrainTimeRecordsNoPhantomAttempts(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	logs := &logBuffer{}
	r := newRig(t, sinkTo(t, crm, proxy.Host(), proxy.Port(), 2*time.Second, logs.Logger()), logs,
		PoolConfig{Workers: 1, BatchSize: 1})
	eventually(t, 5*time.Second, "connected", func() bool { return r.pool.Status().State == StateConnected })
	proxy.Blackhole(true)
	saved := r.publish(t, someMessages("u1", 20)...)
	eventually(t, 5*time.Second, "the first event taken", func() bool { return r.bus.Len() < len(saved) })

	if r.pool.Stop(100 * time.Millisecond) {
		t.Fatal("Stop: drained with the CRM blackholed, want a timeout")
	}
	attempted := 0
	for _, m := range saved {
		got := mustGet(t, r.store, m.ID)
		if got.MirrorStatus != domain.MirrorPending {
			t.Errorf("message %d: got %s, want pending", m.ID, got.MirrorStatus)
		}
		if got.MirrorAttempts > 0 {
			attempted++
		}
	}
	if attempted > 1 {
		t.Errorf("messages with an attempt recorded: got %d, want at most 1 (the batch in flight)", attempted)
	}
}

// pingCounter is a real sink that counts its pings.
type pingCounter struct {
	Sink
	pings atomic.Int64
}

func (c *pingCounter) Ping(ctx context.Context) error {
	defer c.pings.Add(1)
	return c.Sink.Ping(ctx)
}

// TestPingDoesNotClearAWriteRefusal: an account that may SELECT but not
// INSERT passes every ping. The INSERT's refusal (1142) must stand until a
// write succeeds, not flip to connected at each ping, which would log a
// change of state and hand the reconciler the whole failed backlog each
// time.
func TestPingDoesNotClearAWriteRefusal(t *testing.T) {
	crm := mysqltest.New(t)
	user := crm.UniqueUser("igm_ro")
	crm.CreateUserWith(t, user, "read-only-password", "SELECT")
	sink, err := OpenMySQL(MySQLConfig{
		Host: crm.Host, Port: crm.Port, User: user, Password: "read-only-password",
		Database: crm.Name, Table: crm.Table, TLS: "false", Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	counted := &pingCounter{Sink: sink}
	logs := &logBuffer{}
	r := newRig(t, counted, logs, PoolConfig{PingInterval: 10 * time.Millisecond})
	eventually(t, 5*time.Second, "connected (SELECT is allowed)", func() bool {
		return r.pool.Status().State == StateConnected
	})

	saved := r.publish(t, someMessages("u1", 3)...)
	r.waitStatus(t, 5*time.Second, domain.MirrorFailed, saved...)
	after := counted.pings.Load()
	eventually(t, 5*time.Second, "five more pings", func() bool { return counted.pings.Load() >= after+5 })

	st := r.pool.Status()
	if st.State != StateMisconfigure || !strings.Contains(st.LastError, "1142") {
		t.Errorf("state after pings: got %s %q, want misconfigured with 1142", st.State, st.LastError)
	}
	if got := logs.Count("crm mirror connected"); got != 1 {
		t.Errorf("connected log lines: got %d, want 1 (the first ping's)", got)
	}
}

// TestPoolRetriesWhileTheCRMIsAway keeps the CRM refusing connections
// while messages arrive: they wait (pending, not failed) with retries and
// backoff, the state is logged once, and when the CRM is back every
// message reaches it once.
func TestPoolRetriesWhileTheCRMIsAway(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	proxy.SetRefuse(true)
	logs := &logBuffer{}
	r := newRig(t, sinkTo(t, crm, proxy.Host(), proxy.Port(), time.Second, logs.Logger()), logs, PoolConfig{BatchSize: 5})
	saved := r.publish(t, someMessages("u1", 12)...)

	eventually(t, 10*time.Second, "retries", func() bool { return r.pool.Retried() >= 3 })
	if got := r.pool.Status().State; got != StateUnreachable {
		t.Errorf("state while refused: got %s, want unreachable", got)
	}
	for _, m := range saved {
		if got := mustGet(t, r.store, m.ID).MirrorStatus; got != domain.MirrorPending {
			t.Fatalf("message %d while refused: got %s, want pending", m.ID, got)
		}
	}

	proxy.SetRefuse(false)
	r.waitStatus(t, 10*time.Second, domain.MirrorMirrored, saved...)
	if diff := mysqltest.DiffCounts(crm.RowCounts(t), wantCounts(saved)); diff != "" {
		t.Fatalf("crm: %s", diff)
	}
	if got := logs.Count("crm mirror unreachable"); got != 1 {
		t.Errorf("unreachable log lines: got %d, want 1", got)
	}
	if got := r.pool.Status().State; got != StateConnected {
		t.Errorf("state after: got %s, want connected", got)
	}
}

// TestPoolUnknownOutcomeIsCheckedFirst makes the CRM's answer arrive after
// the insert timeout, although the INSERT itself reached MariaDB and was
// applied. The retry must find the row instead of writing it again.
func TestPoolUnknownOutcomeIsCheckedFirst(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	logs := &logBuffer{}
	const timeout = 300 * time.Millisecond
	r := newRig(t, sinkTo(t, crm, proxy.Host(), proxy.Port(), timeout, nil), logs, PoolConfig{
		Workers: 1, InsertTimeout: timeout,
	})
	eventually(t, 5*time.Second, "connected", func() bool { return r.pool.Status().State == StateConnected })

	// Each chunk takes 400 ms each way: the INSERT lands after the
	// client has given up at 300 ms, and no reply makes it back in time.
	proxy.SetLatency(400 * time.Millisecond)
	saved := r.publish(t, someMessages("u1", 3)...)
	// The worker's first batch holds one to three of them (it takes what
	// is queued); its INSERT is the only statement that gets through: any
	// retry needs a new connection, whose handshake cannot beat the timeout.
	eventually(t, 10*time.Second, "the late INSERT to land", func() bool { return crm.Count(t) > 0 })
	eventually(t, 10*time.Second, "a transient error", func() bool { return r.pool.Count(OutcomeTransient) > 0 })
	landed := crm.Count(t)
	if got := mustGet(t, r.store, saved[0].ID).MirrorStatus; got != domain.MirrorPending {
		t.Fatalf("status while slow: got %s, want pending", got)
	}

	proxy.SetLatency(0)
	r.waitStatus(t, 10*time.Second, domain.MirrorMirrored, saved...)
	if diff := mysqltest.DiffCounts(crm.RowCounts(t), wantCounts(saved)); diff != "" {
		t.Fatalf("crm: %s", diff)
	}
	if got, want := r.pool.Count(OutcomePresent), uint64(landed); got != want {
		t.Errorf("already-present count: got %d, want %d (the rows of the late INSERT)", got, want)
	}
	if got, want := r.pool.Count(OutcomeOK), uint64(len(saved)-landed); got != want {
		t.Errorf("ok count: got %d, want %d", got, want)
	}
}

// TestPoolDegradedMessages mirrors into a latin1 CRM: Cyrillic and emoji
// still arrive, replaced, and the local messages say so.
func TestPoolDegradedMessages(t *testing.T) {
	crm := mysqltest.NewWithCharset(t, "latin1")
	r := newRig(t, sinkTo(t, crm, crm.Host, crm.Port, 5*time.Second, nil), &logBuffer{}, PoolConfig{})
	eventually(t, 5*time.Second, "connected", func() bool { return r.pool.Status().State == StateConnected })
	saved := r.publish(t,
		newMessage(0, "u1", "Привет 👋"),
		newMessage(1, "u1", "plain ascii"),
		newMessage(2, "u1", "café – “ok”"),
	)
	r.waitStatus(t, 10*time.Second, domain.MirrorMirrored, saved...)
	want := map[int64]struct {
		text     string
		degraded bool
	}{
		saved[0].ID: {"?????? ?", true},
		saved[1].ID: {"plain ascii", false},
		saved[2].ID: {"café – “ok”", false},
	}
	rows := crm.Rows(t)
	if len(rows) != 3 {
		t.Fatalf("crm rows: got %d, want 3", len(rows))
	}
	texts := map[string]bool{}
	for _, row := range rows {
		texts[row.Message] = true
	}
	for id, w := range want {
		m := mustGet(t, r.store, id)
		if m.MirrorDegraded != w.degraded {
			t.Errorf("message %d degraded: got %v, want %v", id, m.MirrorDegraded, w.degraded)
		}
		if !texts[w.text] {
			t.Errorf("crm has no row %q (rows: %v)", w.text, texts)
		}
	}
	if got := mustGet(t, r.store, saved[0].ID).MessageText; got != "Привет 👋" {
		t.Errorf("local text: got %q, want it untouched", got)
	}
}

// TestPoolRowDataSplitsTheBatch gives the pool a sink that believes the
// CRM table is utf8mb4 while it is latin1 (a charset report the sink
// cannot trust): the server refuses the batch over one Cyrillic row
// (1366), the pool writes the rows one by one, and the refused row goes
// in last-resort ASCII, marked degraded, while its neighbours are intact.
func TestPoolRowDataSplitsTheBatch(t *testing.T) {
	crm := mysqltest.NewWithCharset(t, "latin1")
	sink := sinkTo(t, crm, crm.Host, crm.Port, 5*time.Second, nil)
	sink.mu.Lock()
	sink.read = true // keep the utf8mb4 defaults: Ping will not read the columns
	sink.mu.Unlock()
	r := newRig(t, sink, &logBuffer{}, PoolConfig{Workers: 1, BatchSize: 10})
	saved := r.publish(t,
		newMessage(0, "u1", "first"),
		newMessage(1, "u1", "Привет"),
		newMessage(2, "u1", "third"),
	)
	r.waitStatus(t, 10*time.Second, domain.MirrorMirrored, saved...)
	rows := crm.Rows(t)
	var got []string
	for _, row := range rows {
		got = append(got, row.Message)
	}
	if want := []string{"first", "??????", "third"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("crm messages: got %q, want %q", got, want)
	}
	for i, want := range []bool{false, true, false} {
		if m := mustGet(t, r.store, saved[i].ID); m.MirrorDegraded != want {
			t.Errorf("message %d degraded: got %v, want %v", i, m.MirrorDegraded, want)
		}
	}
	if got := r.pool.Count(OutcomeOK); got != 3 {
		t.Errorf("ok count: got %d, want 3", got)
	}
}

// TestPoolStatementStillRunningOnTheServer blocks the CRM table with a
// lock so that the INSERT waits inside MariaDB past the insert timeout:
// the client gives up, but the server would still apply the statement
// when the lock goes. The retry must not write the row a second time.
func TestPoolStatementStillRunningOnTheServer(t *testing.T) {
	crm := mysqltest.New(t)
	const timeout = 300 * time.Millisecond
	r := newRig(t, sinkTo(t, crm, crm.Host, crm.Port, timeout, nil), &logBuffer{}, PoolConfig{Workers: 1, InsertTimeout: timeout})
	eventually(t, 5*time.Second, "connected", func() bool { return r.pool.Status().State == StateConnected })

	ctx := t.Context()
	lock, err := crm.SQL.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	// A transaction holding a next-key lock up to the supremum: an INSERT
	// waits for InnoDB's row lock (innodb_lock_wait_timeout, 50 s).
	if _, err := lock.ExecContext(ctx, "INSERT INTO "+crm.Table+" (user_id, username, direction, message, created_at) VALUES ('x', 'x', 'in', 'lock holder', '2026-01-01 00:00:00')"); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(ctx, "SELECT id FROM "+crm.Table+" WHERE id > 0 FOR UPDATE"); err != nil {
		t.Fatalf("lock: %v", err)
	}
	saved := r.publish(t, newMessage(0, "u1", "blocked by a lock"))
	eventually(t, 10*time.Second, "retries against the lock", func() bool { return r.pool.Retried() >= 3 })
	if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if _, err := lock.ExecContext(ctx, "DELETE FROM "+crm.Table+" WHERE message = 'lock holder'"); err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, 10*time.Second, domain.MirrorMirrored, saved...)
	// Give a statement that outlived its client the chance to land.
	eventually(t, 5*time.Second, "no thread of the pool left waiting", func() bool {
		var n int
		err := crm.SQL.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Query' AND INFO LIKE 'INSERT%'", crm.Name).Scan(&n)
		return err == nil && n == 0
	})
	if diff := mysqltest.DiffCounts(crm.RowCounts(t), wantCounts(saved)); diff != "" {
		t.Fatalf("crm: %s", diff)
	}
}

func TestBackoffAndJitter(t *testing.T) {
	p := NewPool(PoolConfig{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Logger: quiet}, nil, nil, nil, nil)
	var got []time.Duration
	d := time.Duration(0)
	for range 7 {
		d = p.nextBackoff(d)
		got = append(got, d)
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff sequence: got %v, want %v ms", got, want)
		}
	}
	seen := map[time.Duration]bool{}
	for range 1000 {
		j := jitter(time.Second)
		if j < 500*time.Millisecond || j > time.Second {
			t.Fatalf("jitter(1s): got %s, want within [500ms, 1s]", j)
		}
		seen[j] = true
	}
	if len(seen) < 100 {
		t.Errorf("jitter(1s): got %d distinct waits in 1000, want them spread", len(seen))
	}
}

// TestPoolSendsOnlyWhatItClaims sends the pool events whose messages it
// may not mirror, or not blindly. A message another instance owns is not
// claimed, so nothing is sent for it, not even a CRM check. A message
// mirrored since its event was made is claimed as a check, which finds
// its row; a mirrored message an operator asked to have checked was
// claimed by the resync, so the CRM is checked and the missing row
// written.
func TestPoolSendsOnlyWhatItClaims(t *testing.T) {
	crm := mysqltest.New(t)
	r := newRig(t, sinkTo(t, crm, crm.Host, crm.Port, 5*time.Second, nil), &logBuffer{}, PoolConfig{Workers: 1})
	ctx := t.Context()
	saved := mustSave(t, r.store, newMessage(0, "u1", "mirrored meanwhile"), newMessage(1, "u1", "resync of a mirrored one"))
	for _, m := range saved {
		setState(t, r.store, m.ID, domain.MirrorMirrored, 1)
	}
	// The first one's row is in the CRM, as a mirrored message's is.
	if err := r.sink.Insert(ctx, []Row{MapRow(&saved[0])}); err != nil {
		t.Fatal(err)
	}
	other := mustOpenStoreAt(t, r.path) // another instance on the same store
	theirs := mustSave(t, other, newMessage(2, "u2", "another instance's"))[0]
	claimed, err := r.store.ClaimCandidates(ctx, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorMirrored}, AfterID: saved[0].ID})
	if err != nil || len(claimed) != 1 || claimed[0].ID != saved[1].ID {
		t.Fatalf("operator's claim: got %+v, %v; want message %d", claimed, err, saved[1].ID)
	}
	for _, ev := range []events.MessageSaved{
		{Message: saved[0]},
		{Message: theirs},
		{Message: claimed[0]},
	} {
		if got := r.bus.Publish(ev); got != events.Queued {
			t.Fatalf("publish: got %d, want queued", got)
		}
	}
	eventually(t, 10*time.Second, "the resync's row", func() bool { return r.pool.Count(OutcomeOK) == 1 })
	eventually(t, 10*time.Second, "the check of the mirrored one", func() bool { return r.pool.Count(OutcomePresent) == 1 })
	eventually(t, 10*time.Second, "the other instance's event skipped", func() bool { return r.pool.ClaimSkipped() == 1 })
	if diff := mysqltest.DiffCounts(crm.RowCounts(t), wantCounts(saved)); diff != "" {
		t.Fatalf("crm: %s", diff)
	}
	for _, m := range saved {
		if got := mustGet(t, r.store, m.ID); got.MirrorStatus != domain.MirrorMirrored {
			t.Errorf("message %d: got %s, want mirrored", m.ID, got.MirrorStatus)
		}
	}
	if got := mustGet(t, r.store, theirs.ID); got.MirrorStatus != domain.MirrorPending || got.MirrorAttempts != 0 || got.MirrorOwner != other.Lease().Owner {
		t.Errorf("the other instance's message: got %s, %d attempts, owner %q; want it untouched", got.MirrorStatus, got.MirrorAttempts, got.MirrorOwner)
	}
}
