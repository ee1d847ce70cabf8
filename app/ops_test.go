package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/check"
	"igmirror/sqlite"
)

// scrapeURL is scrape for a /metrics at any address.
func scrapeURL(t testing.TB, u string) metricSet {
	t.Helper()
	return scrape(t, &testApp{base: strings.TrimSuffix(u, "/metrics")})
}

// TestMetricsAddrOwnListener: with METRICS_ADDR set, /metrics is served
// there only, the public listener answers 404 for it, and the metrics
// listener serves nothing else.
func TestMetricsAddrOwnListener(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsAddr = "127.0.0.1:0"
	ta := startApp(t, cfg)
	if ta.MetricsAddr() == "" {
		t.Fatal("MetricsAddr: empty with METRICS_ADDR set")
	}
	metricsBase := "http://" + ta.MetricsAddr()

	if code, body := ta.get(ta.base + "/metrics"); code != http.StatusNotFound {
		t.Errorf("public GET /metrics: got %d %s, want 404", code, body)
	}
	ms := scrapeURL(t, metricsBase+"/metrics")
	if got := ms.value(t, "igmirror_instance_info", "instance_id", testInstanceID); got != 1 {
		t.Errorf("instance_info on the metrics listener: got %v, want 1", got)
	}
	for _, path := range []string{"/healthz", "/readyz", "/webhooks/instagram", "/admin/mirror/stats"} {
		if code, _ := ta.get(metricsBase + path); code != http.StatusNotFound {
			t.Errorf("metrics listener GET %s: got %d, want 404", path, code)
		}
	}
	// The public listener still does its job.
	if code, _ := ta.get(ta.base + "/healthz"); code != http.StatusOK {
		t.Errorf("public /healthz: got %d, want 200", code)
	}
	if !strings.Contains(ta.logs.String(), `"metrics_addr":"`+ta.MetricsAddr()+`"`) {
		t.Error("the listening line does not name the metrics address")
	}
}

// TestMetricsOnPublicByDefault: without METRICS_ADDR, /metrics stays on
// the public listener and no other listener is bound.
func TestMetricsOnPublicByDefault(t *testing.T) {
	ta := startApp(t, testConfig(t))
	if ta.MetricsAddr() != "" {
		t.Errorf("MetricsAddr: got %q, want empty", ta.MetricsAddr())
	}
	if got := scrape(t, ta).value(t, "igmirror_instance_info", "instance_id", testInstanceID); got != 1 {
		t.Errorf("instance_info: got %v, want 1", got)
	}
}

// TestRunMetricsAddrBad: a METRICS_ADDR that does not parse, or whose
// port is taken, stops start-up with one line naming the variable.
func TestRunMetricsAddrBad(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name, value string
		wantCode    int
	}{
		{"no port", "metrics.internal", 2},
		{"port taken", taken.Addr().String(), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(context.Background(), []string{
				"HTTP_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0", "SQLITE_PATH=" + filepath.Join(t.TempDir(), "run.db"),
				"METRICS_ADDR=" + tc.value,
			}, &out)
			if code != tc.wantCode {
				t.Errorf("exit code: got %d, want %d\n%s", code, tc.wantCode, out.String())
			}
			var failure []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if strings.Contains(line, "METRICS_ADDR") && !strings.Contains(line, `"msg":"starting igmirror"`) {
					failure = append(failure, line)
				}
			}
			if len(failure) != 1 {
				t.Errorf("lines naming METRICS_ADDR (besides the config dump): got %d, want 1\n%s", len(failure), out.String())
			}
		})
	}
}

// TestLastDeliveryTimestamp: 0 before any delivery, unchanged by a refused
// one, the time of the last stored one after it.
func TestLastDeliveryTimestamp(t *testing.T) {
	ta := startApp(t, testConfig(t))
	last := func() float64 { return scrape(t, ta).value(t, "igmirror_last_delivery_timestamp_seconds") }
	if got := last(); got != 0 {
		t.Fatalf("before any delivery: got %v, want 0", got)
	}
	body := sample(t, "inbound_text.json")
	if code, _ := ta.postWithSig(body, "sha256=00"); code != http.StatusForbidden {
		t.Fatalf("badly signed delivery: got %d, want 403", code)
	}
	if got := last(); got != 0 {
		t.Fatalf("after a refused delivery: got %v, want 0", got)
	}
	before := float64(time.Now().UnixNano()) / 1e9
	if code, resp := ta.post(body); code != http.StatusOK {
		t.Fatalf("delivery: got %d %s", code, resp)
	}
	after := float64(time.Now().UnixNano()) / 1e9
	if got := last(); got < before || got > after {
		t.Errorf("after a stored delivery: got %v, want between %v and %v", got, before, after)
	}
}

// countingLag is the real store, with its OldestUnmirrored calls counted.
type countingLag struct {
	*sqlite.Store
	calls atomic.Int64
}

func (c *countingLag) OldestUnmirrored(ctx context.Context) (time.Time, bool, error) {
	c.calls.Add(1)
	return c.Store.OldestUnmirrored(ctx)
}

// fakeClock is a settable clock for the cached gauges.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestMirrorLagGauge drives the lag gauge over a real store with a fake
// clock: the age of the oldest pending message, one store read per cache
// period whatever the number of scrapes, 0 once everything is mirrored,
// and the last value (still ageing) with one log line when the store
// cannot be read.
func TestMirrorLagGauge(t *testing.T) {
	st, err := sqlite.Open(sqlite.Options{Path: filepath.Join(t.TempDir(), "lag.db"), Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = st.Close()
		}
	})
	src := &countingLag{Store: st}
	logs := &check.LogBuffer{}
	cache, lag := newLagGauge(src, logs.Logger())
	clock := &fakeClock{now: time.Now()}
	cache.now = clock.Now

	if got := lag(); got != 0 {
		t.Fatalf("empty store: got %v, want 0", got)
	}
	mid := "mid.lag.1"
	res, err := st.Save(context.Background(), domain.Batch{Messages: []domain.Message{{
		InstagramMessageID: &mid, SenderID: "cust1", RecipientID: "biz1", Direction: domain.Inbound,
		MessageText: "hello", Timestamp: time.Date(2025, 11, 21, 0, 0, 0, 0, time.UTC), UserID: "cust1",
		MirrorStatus: domain.MirrorPending,
	}}})
	if err != nil || len(res.New) != 1 {
		t.Fatalf("save: %v (%d new)", err, len(res.New))
	}
	stored, err := st.Get(context.Background(), res.New[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	// The empty answer is cached: the message shows only after the period.
	if got := lag(); got != 0 {
		t.Errorf("within the cache period of the empty answer: got %v, want 0 (cached)", got)
	}
	clock.now = stored.CreatedAt.Add(90 * time.Second)
	want := 90.0
	for range 5 {
		if got := lag(); got != want {
			t.Fatalf("one pending message: got %v, want %v", got, want)
		}
	}
	if got := src.calls.Load(); got != 2 {
		t.Errorf("store reads after 7 scrapes in 2 cache periods: got %d, want 2", got)
	}

	// Between reads and while the store fails, the lag keeps its pace.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	for i := range 3 {
		clock.Advance(scrapeCacheTTL)
		want += scrapeCacheTTL.Seconds()
		if got := lag(); got != want {
			t.Fatalf("store closed, scrape %d: got %v, want %v (the last oldest, aged)", i, got, want)
		}
	}
	if got := src.calls.Load(); got != 5 {
		t.Errorf("store reads: got %d, want 5 (a failed read is cached too)", got)
	}
	if n := logs.Count("metrics: store read failed"); n != 1 {
		t.Errorf("failed-read log lines within a minute: got %d, want 1", n)
	}
	clock.Advance(scrapeErrorLogEvery)
	lag()
	if n := logs.Count("metrics: store read failed"); n != 2 {
		t.Errorf("failed-read log lines a minute later: got %d, want 2", n)
	}
}

// TestMirrorLagGaugeZeroWhenMirrored: once the oldest message is
// mirrored the lag drops to 0, through the whole service's /metrics.
func TestMirrorLagGaugeZeroWhenMirrored(t *testing.T) {
	ta := startApp(t, testConfig(t))
	if code, body := ta.post(sample(t, "inbound_text.json")); code != http.StatusOK {
		t.Fatalf("delivery: got %d %s", code, body)
	}
	ms := scrape(t, ta)
	// The mirror is off: the message is disabled, not waiting for the CRM.
	if got := ms.value(t, "igmirror_mirror_lag_seconds"); got != 0 {
		t.Errorf("mirror off: lag %v, want 0", got)
	}
	if got := ms.value(t, "igmirror_messages_by_mirror_status", "mirror_status", "disabled"); got != 1 {
		t.Errorf("disabled messages: got %v, want 1", got)
	}
}

// TestMirrorLagWithCRMDown: with the CRM unreachable a stored message
// waits, and the lag and the pending or failed counts show it.
func TestMirrorLagWithCRMDown(t *testing.T) {
	cfg := testConfig(t)
	blackholeCRM(t, &cfg)
	ta := startApp(t, cfg)
	if code, body := ta.post(sample(t, "inbound_text.json")); code != http.StatusOK {
		t.Fatalf("delivery: got %d %s", code, body)
	}
	var ms metricSet
	eventually(t, 10*time.Second, "a positive mirror lag", func() bool {
		ms = scrape(t, ta)
		return ms.value(t, "igmirror_mirror_lag_seconds") > 0
	})
	waiting := ms.value(t, "igmirror_messages_by_mirror_status", "mirror_status", "pending") +
		ms.value(t, "igmirror_messages_by_mirror_status", "mirror_status", "failed")
	if waiting != 1 {
		t.Errorf("pending + failed messages: got %v, want 1", waiting)
	}
}

// subscriptionGraph is a fake Graph API answering GET /me/subscribed_apps
// with what the test last set, and counting the calls.
type subscriptionGraph struct {
	*httptest.Server
	mu    sync.Mutex
	body  string
	calls atomic.Int64
}

func newSubscriptionGraph(t *testing.T, token string) *subscriptionGraph {
	t.Helper()
	g := &subscriptionGraph{body: `{"data":[{"subscribed_fields":["messages"]}]}`}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/me/subscribed_apps" || r.URL.Query().Get("access_token") != token {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"message":"unknown path","code":100}}`)
			return
		}
		g.calls.Add(1)
		g.mu.Lock()
		defer g.mu.Unlock()
		fmt.Fprint(w, g.body)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *subscriptionGraph) answer(body string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.body = body
}

// TestSubscriptionInService: the service checks the subscription at
// start; the metric, /readyz (never failed by it) and the admin endpoint
// show it; a lost subscription is one log line; the token appears in no
// log line, no metric and no answer.
func TestSubscriptionInService(t *testing.T) {
	const token = "IGAAtest-subscription-token/+="
	g := newSubscriptionGraph(t, token)
	cfg := testConfig(t)
	cfg.InstagramGraphURL = g.URL
	cfg.InstagramAccessToken = token
	cfg.SubscriptionCheckInterval = 5 * time.Minute
	ta := startApp(t, cfg)

	state := func(ms metricSet) string {
		for _, s := range []string{"unknown", "subscribed", "not_subscribed", "error"} {
			if ms.value(t, "igmirror_subscription_state", "state", s) == 1 {
				return s
			}
		}
		return "none"
	}
	eventually(t, 10*time.Second, "the start-up check", func() bool { return g.calls.Load() >= 1 && state(scrape(t, ta)) == "subscribed" })
	ms := scrape(t, ta)
	if got := ms.value(t, "igmirror_subscription_last_check_timestamp_seconds"); got <= 0 {
		t.Errorf("last check timestamp: got %v, want > 0", got)
	}

	g.answer(`{"data":[]}`)
	r := adminCall(t, ta, http.MethodGet, "/admin/subscription?check=1", nil)
	var got struct {
		State    string   `json:"state"`
		Fields   []string `json:"subscribed_fields"`
		Interval float64  `json:"check_interval_seconds"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil || r.code != http.StatusOK {
		t.Fatalf("GET /admin/subscription?check=1: %d %s (%v)", r.code, r.body, err)
	}
	if got.State != "not_subscribed" || got.Interval != cfg.SubscriptionCheckInterval.Seconds() {
		t.Errorf("admin subscription: got %+v, want not_subscribed every %v s", got, cfg.SubscriptionCheckInterval.Seconds())
	}
	if s := state(scrape(t, ta)); s != "not_subscribed" {
		t.Errorf("metric after the loss: got %s, want not_subscribed", s)
	}
	code, body := ta.get(ta.base + "/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"subscription":{`) || !strings.Contains(body, `"state":"not_subscribed"`) {
		t.Errorf("readyz with the subscription lost: got %d %s, want 200 showing not_subscribed", code, body)
	}
	if r := opsDo(t, http.MethodGet, ta.admin+"/admin/subscription", nil, nil); r.code != http.StatusUnauthorized {
		t.Errorf("admin subscription without a token: got %d, want 401", r.code)
	}
	if n := ta.logs.Count(`"msg":"instagram webhook subscription state changed"`); n != 2 {
		t.Errorf("state-change log lines: got %d, want 2 (unknown→subscribed→not_subscribed)", n)
	}
	metricsText := opsDo(t, http.MethodGet, ta.base+"/metrics", nil, nil).body
	for what, s := range map[string]string{"logs": ta.logs.String(), "metrics": string(metricsText), "readyz": body, "admin": string(r.body)} {
		noSecretsIn(t, what, s, token, url.QueryEscape(token))
	}
}

// TestSubscriptionWithoutToken: no access token, no Graph API call, the
// unknown state, and /readyz unaffected.
func TestSubscriptionWithoutToken(t *testing.T) {
	g := newSubscriptionGraph(t, "unused")
	cfg := testConfig(t)
	cfg.InstagramGraphURL = g.URL
	cfg.SubscriptionCheckInterval = 5 * time.Minute
	ta := startApp(t, cfg)
	if got := scrape(t, ta).value(t, "igmirror_subscription_state", "state", "unknown"); got != 1 {
		t.Errorf("state unknown: got %v, want 1", got)
	}
	r := adminCall(t, ta, http.MethodGet, "/admin/subscription?check=1", nil)
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"state":"unknown"`) || !strings.Contains(string(r.body), `"check_interval_seconds":0`) {
		t.Errorf("admin subscription without a token: got %d %s", r.code, r.body)
	}
	if code, body := ta.get(ta.base + "/readyz"); code != http.StatusOK || !strings.Contains(body, `"state":"unknown"`) {
		t.Errorf("readyz: got %d %s", code, body)
	}
	if n := g.calls.Load(); n != 0 {
		t.Errorf("graph calls without a token: got %d, want 0", n)
	}
}
