package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/mysqltest"
)

// resyncAnswer is the body of POST /admin/mirror/resync.
type resyncAnswer struct {
	Offered    *int `json:"offered"`
	TurnedAway *int `json:"turned_away"`
}

func resync(t testing.TB, ta *testApp, body any) (offered, turnedAway int) {
	t.Helper()
	r := adminCall(t, ta, http.MethodPost, "/admin/mirror/resync", body)
	if r.code != http.StatusOK {
		t.Fatalf("resync: got %d %s, want 200", r.code, r.body)
	}
	a := decodeAs[resyncAnswer](t, r)
	if a.Offered == nil || a.TurnedAway == nil {
		t.Fatalf("resync: got %s, want offered and turned_away", r.body)
	}
	return *a.Offered, *a.TurnedAway
}

// crmRowOf is the CRM row a stored message should become (username = user
// id: no access token is configured).
func crmRowOf(m domain.Message) mysqltest.Row {
	dir := "in"
	if m.Direction == domain.Outbound {
		dir = "out"
	}
	return mysqltest.Row{UserID: m.UserID, Username: m.UserID, Direction: dir, Message: m.MessageText, CreatedAt: m.Timestamp.Truncate(time.Second)}
}

func sortedRows(rows []mysqltest.Row) []mysqltest.Row {
	out := slices.Clone(rows)
	for i := range out {
		out[i].ID = 0
	}
	slices.SortFunc(out, func(a, b mysqltest.Row) int {
		return strings.Compare(a.Message, b.Message)
	})
	return out
}

func TestResyncAfterCRMWasOff(t *testing.T) {
	crm := mysqltest.New(t)
	cfg := testConfig(t)

	// The CRM is off: messages are stored, marked disabled.
	off := startApp(t, cfg)
	start := time.Date(2026, 11, 7, 12, 0, 0, 0, time.UTC)
	postDMs(t, off, dmSeries("offline", 60, start))
	for i, in := range []map[string]any{
		{"sender_id": bizID, "recipient_id": "cust-a", "direction": "outbound", "message_text": "admin said this", "instagram_message_id": "adm-off-1"},
		{"sender_id": "cust-b", "recipient_id": bizID, "direction": "inbound", "message_text": "admin recorded that"},
	} {
		if r := adminCall(t, off, http.MethodPost, "/admin/messages", in); r.code != http.StatusCreated {
			t.Fatalf("admin POST %d: got %d %s", i, r.code, r.body)
		}
	}
	const total = 62
	off.stop()

	// The same SQLite file, now with the CRM on.
	withCRM(&cfg, crm)
	ta := startApp(t, cfg)
	stored := ta.messages()
	if len(stored) != total {
		t.Fatalf("stored: got %d, want %d", len(stored), total)
	}
	for _, m := range stored {
		if m.MirrorStatus != domain.MirrorDisabled {
			t.Fatalf("message %d: got status %s, want disabled", m.ID, m.MirrorStatus)
		}
	}
	if got := crm.Count(t); got != 0 {
		t.Fatalf("CRM rows before the resync: got %d, want 0 (disabled messages wait for an operator)", got)
	}

	if offered, turned := resync(t, ta, nil); offered != total || turned != 0 {
		t.Fatalf("resync: got offered %d, turned away %d; want %d, 0", offered, turned, total)
	}
	eventually(t, 15*time.Second, "every message mirrored", func() bool {
		return len(listPage(t, ta, "mirror_status=mirrored&limit=500").Messages) == total
	})
	var want []mysqltest.Row
	for _, m := range stored {
		want = append(want, crmRowOf(m))
	}
	want = sortedRows(want)
	if got := sortedRows(crm.Rows(t)); !slices.Equal(got, want) {
		t.Fatalf("CRM rows: got %d rows, want exactly one per stored message (%d)\n got %v\nwant %v", len(got), len(want), got[:min(3, len(got))], want[:3])
	}

	// Nothing is left to offer; re-checking the mirrored ones finds each in
	// the CRM and inserts nothing.
	if offered, turned := resync(t, ta, nil); offered != 0 || turned != 0 {
		t.Errorf("second resync: got offered %d, turned away %d; want 0, 0", offered, turned)
	}
	if offered, turned := resync(t, ta, map[string]string{"mirror_status": "mirrored"}); offered != total || turned != 0 {
		t.Fatalf("resync of mirrored: got offered %d, turned away %d; want %d, 0", offered, turned, total)
	}
	eventually(t, 15*time.Second, "every mirrored message checked in the CRM", func() bool {
		return ta.pool.Count("already_present") == total
	})
	if got := sortedRows(crm.Rows(t)); !slices.Equal(got, want) {
		t.Errorf("CRM rows after the verify pass: got %d rows, want the same %d", len(got), len(want))
	}
	if got := ta.pool.Count("ok"); got != total {
		t.Errorf("rows inserted: got %d, want %d", got, total)
	}
	if got := len(listPage(t, ta, "mirror_status=mirrored&limit=500").Messages); got != total {
		t.Errorf("mirrored after the verify pass: got %d, want %d", got, total)
	}
}

func TestResyncNeverBlocks(t *testing.T) {
	cfg := testConfig(t)
	blackholeCRM(t, &cfg)
	cfg.MirrorQueueSize, cfg.MirrorWorkers, cfg.MirrorBatchSize = 1, 1, 1
	cfg.MirrorInsertTimeout = time.Minute
	ta := startApp(t, cfg)

	start := time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC)
	msgs := dmSeries("stuck", 10, start)
	postDMs(t, ta, msgs[:1])
	eventually(t, 10*time.Second, "the worker to take the first event", func() bool { return ta.bus.Len() == 0 })
	postDMs(t, ta, msgs[1:]) // one queued, eight turned away
	eventually(t, 10*time.Second, "eight messages marked dropped", func() bool {
		return len(listPage(t, ta, "mirror_status=dropped").Messages) == 8
	})

	// The CRM hangs and the queue is full: resync answers at once, offering
	// nothing and leaving what it chose marked for the reconciler.
	if offered, turned := resync(t, ta, map[string]string{"mirror_status": "dropped"}); offered != 0 || turned != 8 {
		t.Errorf("resync: got offered %d, turned away %d; want 0, 8", offered, turned)
	}
	since := start.Add(5 * time.Second).Format(time.RFC3339)
	if offered, turned := resync(t, ta, map[string]string{"mirror_status": "dropped", "since": since}); offered != 0 || turned != 5 {
		t.Errorf("resync since %s: got offered %d, turned away %d; want 0, 5", since, offered, turned)
	}
	// Resync's offers into a full queue are not counted as events the
	// webhook's messages lost.
	if got := ta.bus.Dropped("queue_full"); got != 8 {
		t.Errorf("events dropped: got %d, want 8 (at ingest only)", got)
	}
	if got := len(listPage(t, ta, "mirror_status=dropped").Messages); got != 8 {
		t.Errorf("dropped messages: got %d, want 8", got)
	}
}
