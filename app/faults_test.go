package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/mysqltest"
	"igmirror/mirror"
)

// faultWantRows is the CRM content the stored messages call for, once each.
func faultWantRows(msgs []domain.Message) map[mysqltest.RowKey]int {
	out := map[mysqltest.RowKey]int{}
	for i := range msgs {
		r := mirror.MapRow(&msgs[i])
		out[mysqltest.RowKey{UserID: r.UserID, Direction: r.Direction, Message: r.Message, CreatedAt: r.CreatedAt}]++
	}
	return out
}

// faultDelivery is a delivery of two inbound messages numbered n and
// n+1, each long enough that any INSERT carrying it is over 600 bytes.
func faultDelivery(t testing.TB, n int) []byte {
	t.Helper()
	items := make([]map[string]any, 2)
	for i := range items {
		k := n + i
		items[i] = map[string]any{
			"sender":    map[string]any{"id": fmt.Sprintf("cust%d", k%7)},
			"recipient": map[string]any{"id": "17841400000000001"},
			"timestamp": 1763770000000 + int64(k)*1000,
			"message":   map[string]any{"mid": fmt.Sprintf("mid.fault.%d", k), "text": fmt.Sprintf("fault message %d %s", k, strings.Repeat("·", 300))},
		}
	}
	b, err := json.Marshal(map[string]any{"object": "instagram", "entry": []any{map[string]any{"id": "17841400000000001", "messaging": items}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFaultsBetweenMirrorAndCRM puts the CRM behind a fault proxy and
// goes through added latency, a blackhole, connections reset in the
// middle of a statement and the CRM going away, posting deliveries all
// along. The webhook answers 200 throughout, the queue and the goroutine
// count stay bounded, and once the faults clear the CRM holds exactly the
// stored messages, each once. After shutdown no goroutine is left behind.
func TestFaultsBetweenMirrorAndCRM(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.CRMHost, cfg.CRMPort = proxy.Host(), proxy.Port()
	cfg.MirrorReconcileInterval = 200 * time.Millisecond
	cfg.MirrorInsertTimeout = 500 * time.Millisecond
	cfg.MirrorQueueSize = 8
	cfg.MirrorWorkers = 2
	cfg.MirrorBatchSize = 4
	cfg.MirrorDrainTimeout = 2 * time.Second

	baseline := runtime.NumGoroutine()
	ta := startApp(t, cfg)
	eventually(t, 10*time.Second, "the CRM connected", func() bool { return ta.pool.Status().State == mirror.StateConnected })

	transient := func() uint64 { return ta.pool.Count(mirror.OutcomeTransient) }
	n := 0
	postSome := func(count int) {
		t.Helper()
		for range count {
			if code, body := ta.post(faultDelivery(t, n)); code != http.StatusOK {
				t.Fatalf("post during faults: got %d %s, want 200", code, body)
			}
			n += 2
		}
	}
	maxGoroutines := 0
	for _, ph := range []struct {
		name     string
		on, off  func()
		observed func(before uint64) bool // the mirror has met the fault
	}{
		{
			// Slower than usual but inside the insert timeout: rows arrive.
			name: "latency",
			on:   func() { proxy.SetLatency(40 * time.Millisecond) },
			off:  func() { proxy.SetLatency(0) },
			observed: func(uint64) bool {
				// A message posted while the latency is on has been mirrored.
				m, err := ta.store.GetByMID(context.Background(), fmt.Sprintf("mid.fault.%d", n-1))
				return err == nil && m.MirrorStatus == domain.MirrorMirrored
			},
		},
		{
			name:     "blackhole",
			on:       func() { proxy.Blackhole(true) },
			off:      func() { proxy.Blackhole(false) },
			observed: func(before uint64) bool { return transient() > before },
		},
		{
			// Connections accepted from now on die after 600 client bytes:
			// past the handshake, inside the first INSERT.
			name:     "reset mid-statement",
			on:       func() { proxy.CutAfterBytes(600); proxy.ResetAll() },
			off:      func() { proxy.CutAfterBytes(0); proxy.ResetAll() },
			observed: func(before uint64) bool { return transient() > before },
		},
		{
			name:     "crm away",
			on:       func() { proxy.SetRefuse(true); proxy.ResetAll() },
			off:      func() { proxy.SetRefuse(false) },
			observed: func(before uint64) bool { return transient() > before },
		},
	} {
		before := transient()
		ph.on()
		postSome(10)
		eventually(t, 10*time.Second, ph.name+" to reach the mirror", func() bool {
			maxGoroutines = max(maxGoroutines, runtime.NumGoroutine())
			return ph.observed(before)
		})
		postSome(5)
		maxGoroutines = max(maxGoroutines, runtime.NumGoroutine())
		ph.off()
	}
	t.Logf("posted %d messages; goroutines: baseline %d, at most %d during faults", n, baseline, maxGoroutines)
	// Workers, monitor, reconciler, a few pooled connections and the
	// proxy's pumps: nothing grows with the number of messages or retries.
	if limit := baseline + 80; maxGoroutines > limit {
		t.Errorf("goroutines during faults: got %d, want at most %d", maxGoroutines, limit)
	}

	stored := ta.messages()
	if len(stored) != n {
		t.Fatalf("stored: got %d, want %d", len(stored), n)
	}
	var stats map[string]any
	if code, body := ta.adminDo(http.MethodGet, "/admin/mirror/stats", testAdminToken, nil); code != http.StatusOK {
		t.Fatalf("stats: got %d %s", code, body)
	} else if err := json.Unmarshal([]byte(body), &stats); err != nil {
		t.Fatal(err)
	}
	if depth, capacity := stats["queue_depth"].(float64), stats["queue_capacity"].(float64); depth > capacity || capacity != 8 {
		t.Errorf("queue: depth %v of capacity %v, want at most 8 of 8", depth, capacity)
	}
	if dropped := stats["dropped"].(float64); dropped == 0 {
		t.Errorf("dropped: got 0, want the small queue to have turned events away during the faults")
	}

	want := faultWantRows(stored)
	// The CRM row lands just before the local status says so: wait for both.
	eventually(t, 20*time.Second, "the CRM to hold every stored message, each mirrored", func() bool {
		if mysqltest.DiffCounts(crm.RowCounts(t), want) != "" {
			return false
		}
		for _, m := range ta.messages() {
			if m.MirrorStatus != domain.MirrorMirrored {
				return false
			}
		}
		return true
	})
	// Nothing arrives late: the CRM stays exactly right.
	if diff := mysqltest.DiffCounts(crm.RowCounts(t), want); diff != "" {
		t.Fatalf("crm after recovery: %s", diff)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ta.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	ta.client.CloseIdleConnections()
	proxy.ResetAll()
	eventually(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= baseline+2
	})
}

// TestFaultsPermanentRefusal points the mirror at a CRM that refuses the
// password: the webhook still stores and answers 200, every message is
// marked failed with the server's error, readiness stays ready but shows
// the state, stats count the failures, and the state is logged once.
func TestFaultsPermanentRefusal(t *testing.T) {
	crm := mysqltest.New(t)
	user := fmt.Sprintf("igm_refused_%d", time.Now().UnixNano()%1_000_000_000)
	crm.CreateUser(t, user, "the-right-one")
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.CRMUser, cfg.CRMPassword = user, "not-the-password"
	cfg.MirrorReconcileInterval = 100 * time.Millisecond
	cfg.MirrorMaxAttempts = 2
	ta := startApp(t, cfg)

	for i := range 10 {
		if code, body := ta.post(faultDelivery(t, 2*i)); code != http.StatusOK {
			t.Fatalf("post: got %d %s, want 200", code, body)
		}
	}
	eventually(t, 10*time.Second, "every message failed twice", func() bool {
		// The second attempt is counted when it fails; its mark comes first.
		if ta.pool.Count(mirror.OutcomePermanent) != 40 {
			return false
		}
		for _, m := range ta.messages() {
			if m.MirrorStatus != domain.MirrorFailed || m.MirrorAttempts != 2 {
				return false
			}
		}
		return true
	})
	for _, m := range ta.messages() {
		if !strings.HasPrefix(m.MirrorLastError, "mysql 1045:") {
			t.Errorf("message %d last error: got %q, want mysql 1045", m.ID, m.MirrorLastError)
		}
	}

	code, body := ta.get(ta.base + "/readyz")
	var ready struct {
		Status string
		CRM    mirror.Status
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	if code != http.StatusOK || ready.CRM.State != mirror.StateMisconfigure || ready.CRM.LastError != "" {
		t.Errorf("readyz: got %d %+v, want 200 with crm misconfigured and no error text", code, ready)
	}
	var stats struct {
		Failed       uint64 `json:"failed"`
		Retried      uint64 `json:"retried"`
		CRMState     string `json:"crm_state"`
		CRMConnected bool   `json:"crm_connected"`
		CRMLastError string `json:"crm_last_error"`
	}
	_, body = ta.adminDo(http.MethodGet, "/admin/mirror/stats", testAdminToken, nil)
	if err := json.Unmarshal([]byte(body), &stats); err != nil {
		t.Fatalf("stats body %q: %v", body, err)
	}
	if stats.Failed != 40 || stats.Retried != 0 || stats.CRMState != "misconfigured" || stats.CRMConnected || !strings.Contains(stats.CRMLastError, "1045") {
		t.Errorf("stats: got %+v, want 40 failed (20 messages x 2 attempts), 0 retried, misconfigured (1045)", stats)
	}
	if got := strings.Count(ta.logs.String(), "crm mirror refused by the server"); got != 1 {
		t.Errorf("refusal log lines: got %d, want 1", got)
	}
}
