package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"igmirror/config"
	"igmirror/internal/testkit/faultproxy"
	"igmirror/internal/testkit/mysqltest"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// blackholeCRM points cfg's mirror at a proxy that accepts connections and
// never answers, so that a worker holding a message stays busy with it.
// Nothing listens behind the proxy: no MySQL is needed.
func blackholeCRM(t testing.TB, cfg *config.Config) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New("127.0.0.1:1")
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	p.Blackhole(true)
	cfg.CRMEnabled = true
	cfg.CRMHost, cfg.CRMPort = p.Host(), p.Port()
	cfg.CRMUser, cfg.CRMDatabase, cfg.CRMTLS = "crm", "crm", "false"
	// The worker never finishes; shutting down should not wait for it.
	cfg.MirrorDrainTimeout = 100 * time.Millisecond
	return p
}

// fakeGraph is an Instagram Graph API that knows the given usernames and
// answers every other id with a 500 whose message echoes the access token,
// as real APIs sometimes do.
func fakeGraph(t testing.TB, cfg *config.Config, token string, names map[string]string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		id := strings.TrimPrefix(r.URL.Path, "/")
		if name, ok := names[id]; ok && r.URL.Query().Get("access_token") == token {
			fmt.Fprintf(w, `{"username":%q,"id":%q}`, name, id)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"error":{"message":"Invalid OAuth access token - Cannot parse access token %s","type":"OAuthException","code":190}}`, r.URL.Query().Get("access_token"))
	}))
	t.Cleanup(srv.Close)
	cfg.InstagramGraphURL = srv.URL
	cfg.InstagramAccessToken = token
}

// metricSet is one scrape of /metrics, parsed by Prometheus's own parser.
type metricSet map[string]*dto.MetricFamily

func scrape(t testing.TB, ta *testApp) metricSet {
	t.Helper()
	r := opsDo(t, http.MethodGet, ta.base+"/metrics", nil, nil)
	if r.code != http.StatusOK {
		t.Fatalf("GET /metrics: got %d", r.code)
	}
	// Legacy (pre-UTF-8) names: the strictest check, and the zero
	// TextParser of prometheus/common v0.74 panics for want of a scheme.
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(r.body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the sample of family name with exactly the labels given as
// name, value pairs: a counter's or gauge's value, a histogram's count.
func (ms metricSet) value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	f, ok := ms[name]
	if !ok {
		t.Fatalf("metric %s: not exposed", name)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		default:
			t.Fatalf("metric %s: unexpected type %s", name, f.GetType())
		}
	}
	t.Fatalf("metric %s%v: no such sample", name, want)
	return 0
}

// labelValues lists the values label takes across family name's samples.
func (ms metricSet) labelValues(name, label string) []string {
	var out []string
	for _, m := range ms[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && !slices.Contains(out, l.GetValue()) {
				out = append(out, l.GetValue())
			}
		}
	}
	sort.Strings(out)
	return out
}

// metricFamilies is every igmirror metric, its type, and the label values
// of those pre-created at zero.
var metricFamilies = []struct {
	name   string
	typ    dto.MetricType
	label  string
	values []string
}{
	{"igmirror_webhook_deliveries_total", dto.MetricType_COUNTER, "outcome",
		[]string{"bad_request", "forbidden", "store_error", "stored", "too_large", "unauthorized", "unsigned_deny"}},
	{"igmirror_webhook_items_total", dto.MetricType_COUNTER, "kind",
		[]string{"change", "echo", "edit", "invalid", "message", "other", "postback", "reaction", "read", "referral", "standby", "unsend"}},
	{"igmirror_messages_total", dto.MetricType_COUNTER, "outcome", []string{"duplicate", "stored"}},
	{"igmirror_http_request_duration_seconds", dto.MetricType_HISTOGRAM, "", nil},
	{"igmirror_events_published_total", dto.MetricType_COUNTER, "", nil},
	{"igmirror_events_dropped_total", dto.MetricType_COUNTER, "reason", []string{"queue_full", "shutdown"}},
	{"igmirror_mirror_queue_depth", dto.MetricType_GAUGE, "", nil},
	{"igmirror_mirror_queue_capacity", dto.MetricType_GAUGE, "", nil},
	{"igmirror_mirror_inserts_total", dto.MetricType_COUNTER, "outcome",
		[]string{"already_present", "ok", "permanent_error", "row_failed", "transient_error"}},
	{"igmirror_mirror_insert_duration_seconds", dto.MetricType_HISTOGRAM, "", nil},
	{"igmirror_mirror_retries_total", dto.MetricType_COUNTER, "", nil},
	{"igmirror_mirror_claims_skipped_total", dto.MetricType_COUNTER, "", nil},
	{"igmirror_reconciler_offered_total", dto.MetricType_COUNTER, "", nil},
	{"igmirror_username_lookups_total", dto.MetricType_COUNTER, "outcome", []string{"fallback", "hit", "miss"}},
	{"igmirror_crm_connected", dto.MetricType_GAUGE, "", nil},
	{"igmirror_crm_state", dto.MetricType_GAUGE, "state", []string{"connected", "connecting", "disabled", "misconfigured", "unreachable"}},
	{"igmirror_mirror_last_success_timestamp_seconds", dto.MetricType_GAUGE, "", nil},
	{"igmirror_store_commits_total", dto.MetricType_COUNTER, "", nil},
	{"igmirror_store_rollbacks_total", dto.MetricType_COUNTER, "", nil},
	{"igmirror_store_commit_requests_total", dto.MetricType_COUNTER, "", nil},
	{"igmirror_store_writer_busy_seconds_total", dto.MetricType_COUNTER, "", nil},
	{"igmirror_last_delivery_timestamp_seconds", dto.MetricType_GAUGE, "", nil},
	{"igmirror_mirror_lag_seconds", dto.MetricType_GAUGE, "", nil},
	{"igmirror_messages_by_mirror_status", dto.MetricType_GAUGE, "mirror_status",
		[]string{"disabled", "dropped", "failed", "mirrored", "pending"}},
	{"igmirror_store_ready", dto.MetricType_GAUGE, "", nil},
	{"igmirror_instance_info", dto.MetricType_GAUGE, "instance_id", []string{testInstanceID}},
	{"igmirror_subscription_state", dto.MetricType_GAUGE, "state", []string{"error", "not_subscribed", "subscribed", "unknown"}},
	{"igmirror_subscription_last_check_timestamp_seconds", dto.MetricType_GAUGE, "", nil},
}

// startsAtOne reports whether a sample is 1, not 0, on a fresh service
// with the mirror off and no access token.
func startsAtOne(name string, labels []*dto.LabelPair) bool {
	switch name {
	case "igmirror_instance_info", "igmirror_store_ready":
		return true
	case "igmirror_crm_state":
		return labels[0].GetValue() == "disabled"
	case "igmirror_subscription_state":
		return labels[0].GetValue() == "unknown"
	}
	return false
}

func TestMetricsNamesAndZeroes(t *testing.T) {
	ta := startApp(t, testConfig(t))
	// One request, so that the latency histogram has a sample to show.
	if code, _ := ta.get(ta.base + "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: got %d", code)
	}
	ms := scrape(t, ta)

	var want, got []string
	for _, f := range metricFamilies {
		want = append(want, f.name)
	}
	for name, f := range ms {
		switch {
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
			continue // the standard runtime collectors
		case !strings.HasPrefix(name, "igmirror_"):
			t.Errorf("metric %s: want the igmirror_ prefix", name)
		}
		got = append(got, name)
		isCounter := f.GetType() == dto.MetricType_COUNTER
		if isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("metric %s (%s): want _total exactly on counters", name, f.GetType())
		}
		if f.GetType() == dto.MetricType_HISTOGRAM && !strings.HasSuffix(name, "_seconds") {
			t.Errorf("histogram %s: want a _seconds duration", name)
		}
		if f.GetHelp() == "" {
			t.Errorf("metric %s: no help text", name)
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("igmirror metrics:\n got %v\nwant %v", got, want)
	}
	for _, f := range metricFamilies {
		fam, ok := ms[f.name]
		if !ok {
			continue
		}
		if fam.GetType() != f.typ {
			t.Errorf("metric %s: got type %s, want %s", f.name, fam.GetType(), f.typ)
		}
		if f.label == "" {
			continue
		}
		if got := ms.labelValues(f.name, f.label); !slices.Equal(got, f.values) {
			t.Errorf("metric %s: got %s values %v, want %v pre-created", f.name, f.label, got, f.values)
		}
		for _, m := range fam.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			wantV := 0.0
			if startsAtOne(f.name, m.GetLabel()) {
				wantV = 1
			}
			if v != wantV {
				t.Errorf("metric %s %v at start: got %v, want %v", f.name, m.GetLabel(), v, wantV)
			}
		}
	}
	if got := ms.labelValues("igmirror_messages_total", "source"); !slices.Equal(got, []string{"admin", "webhook"}) {
		t.Errorf("messages_total sources: got %v, want [admin webhook]", got)
	}
	if got := ms.value(t, "igmirror_mirror_queue_capacity"); got != float64(ta.cfg.MirrorQueueSize) {
		t.Errorf("queue capacity: got %v, want %d", got, ta.cfg.MirrorQueueSize)
	}
}

func TestMetricsAfterKnownTraffic(t *testing.T) {
	ta := startApp(t, testConfig(t))
	before := scrape(t, ta)

	const n = 5 // deliveries of 3 new messages each
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	series := dmSeries("traffic", 3*n, start)
	var first []byte
	for i := range n {
		body := deliveryOf(t, series[3*i:3*i+3]...)
		if i == 0 {
			first = body
		}
		if code, b := ta.post(body); code != http.StatusOK {
			t.Fatalf("delivery %d: got %d %s", i, code, b)
		}
	}
	for range 2 { // Meta delivers the first one again
		if code, b := ta.post(first); code != http.StatusOK {
			t.Fatalf("redelivery: got %d %s", code, b)
		}
	}
	if code, _ := ta.postWithSig(first, ""); code != http.StatusUnauthorized {
		t.Fatalf("unsigned: got %d, want 401", code)
	}
	if code, _ := ta.postWithSig(first, "sha256="+strings.Repeat("0", 64)); code != http.StatusForbidden {
		t.Fatalf("bad signature: got %d, want 403", code)
	}
	if code, _ := ta.post([]byte(`{"object":"instagram","entry":[`)); code != http.StatusBadRequest {
		t.Fatalf("malformed: got %d, want 400", code)
	}
	adminMsg := map[string]any{"sender_id": "c1", "recipient_id": bizID, "direction": "inbound", "message_text": "x", "instagram_message_id": "adm-1"}
	for _, want := range []int{http.StatusCreated, http.StatusOK} {
		if r := adminCall(t, ta, http.MethodPost, "/admin/messages", adminMsg); r.code != want {
			t.Fatalf("admin POST: got %d %s, want %d", r.code, r.body, want)
		}
	}
	// A scanner's 404s must not mint a label value per path.
	for i := range 20 {
		if code, _ := ta.get(fmt.Sprintf("%s/scan-%d/wp-login.php?x=%d", ta.base, i, i)); code != http.StatusNotFound {
			t.Fatalf("scan: got %d, want 404", code)
		}
	}
	after := scrape(t, ta)

	delta := func(name string, labels ...string) float64 {
		t.Helper()
		return after.value(t, name, labels...) - before.value(t, name, labels...)
	}
	// dmSeries makes every fourth message outbound: count the kinds exactly.
	var inbound, echoes float64
	for i := range 3 * n {
		times := 1.0
		if i < 3 {
			times = 3 // the first delivery came three times
		}
		if series[i].outbound {
			echoes += times
		} else {
			inbound += times
		}
	}
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"igmirror_webhook_deliveries_total", []string{"outcome", "stored"}, n + 2},
		{"igmirror_webhook_deliveries_total", []string{"outcome", "unauthorized"}, 1},
		{"igmirror_webhook_deliveries_total", []string{"outcome", "forbidden"}, 1},
		{"igmirror_webhook_deliveries_total", []string{"outcome", "bad_request"}, 1},
		{"igmirror_webhook_deliveries_total", []string{"outcome", "store_error"}, 0},
		{"igmirror_webhook_deliveries_total", []string{"outcome", "too_large"}, 0},
		{"igmirror_messages_total", []string{"source", "webhook", "outcome", "stored"}, 3 * n},
		{"igmirror_messages_total", []string{"source", "webhook", "outcome", "duplicate"}, 2 * 3},
		{"igmirror_messages_total", []string{"source", "admin", "outcome", "stored"}, 1},
		{"igmirror_messages_total", []string{"source", "admin", "outcome", "duplicate"}, 1},
		{"igmirror_webhook_items_total", []string{"kind", "message"}, inbound},
		{"igmirror_webhook_items_total", []string{"kind", "echo"}, echoes},
		{"igmirror_events_published_total", nil, 0},
		{"igmirror_events_dropped_total", []string{"reason", "queue_full"}, 0},
	}
	for _, c := range checks {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Every stored delivery and admin record is one write request; group
	// commit folds them into at most as many commits.
	commits, requests := delta("igmirror_store_commits_total"), delta("igmirror_store_commit_requests_total")
	if requests < n+2+2 || commits < 1 || commits > requests {
		t.Errorf("sqlite writer: %v commits of %v requests; want at least %v requests in 1..requests commits", commits, requests, n+4)
	}
	if got := delta("igmirror_store_writer_busy_seconds_total"); got <= 0 {
		t.Errorf("sqlite writer busy seconds moved by %v, want > 0", got)
	}
	if got := delta("igmirror_store_rollbacks_total"); got != 0 {
		t.Errorf("sqlite rollbacks moved by %v, want 0", got)
	}
	hist := "igmirror_http_request_duration_seconds"
	for _, c := range []struct {
		listener, route, code string
		want                  float64
	}{
		{"public", "/webhooks/instagram", "200", n + 2},
		{"public", "/webhooks/instagram", "401", 1},
		{"public", "/webhooks/instagram", "403", 1},
		{"public", "/webhooks/instagram", "400", 1},
		{"admin", "/admin/messages", "201", 1},
		{"admin", "/admin/messages", "200", 1},
		{"public", "unmatched", "404", 20},
	} {
		if got := after.value(t, hist, "listener", c.listener, "route", c.route, "code", c.code); got != c.want {
			t.Errorf("%s{%s %s %s}: got %v requests, want %v", hist, c.listener, c.route, c.code, got, c.want)
		}
	}
	routes := after.labelValues(hist, "route")
	for _, r := range routes {
		if !slices.Contains([]string{"/webhooks/instagram", "/metrics", "/healthz", "/readyz", "/admin/messages", "unmatched"}, r) {
			t.Errorf("route label %q: want only registered routes or \"unmatched\"", r)
		}
	}
	if got := after.value(t, "igmirror_crm_state", "state", "disabled"); got != 1 {
		t.Errorf("crm_state{disabled}: got %v, want 1", got)
	}
}

func TestMetricsFullQueueDrops(t *testing.T) {
	cfg := testConfig(t)
	blackholeCRM(t, &cfg)
	cfg.MirrorQueueSize, cfg.MirrorWorkers, cfg.MirrorBatchSize = 1, 1, 1
	cfg.MirrorInsertTimeout = time.Minute
	ta := startApp(t, cfg)

	start := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	msgs := dmSeries("full", 4, start)
	// The one worker takes the first message and hangs on the CRM...
	postDMs(t, ta, msgs[:1])
	eventually(t, 10*time.Second, "the worker to take the first event", func() bool { return ta.bus.Len() == 0 })
	// ...the second fills the queue, the next two are turned away.
	postDMs(t, ta, msgs[1:])

	ms := scrape(t, ta)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"igmirror_events_published_total", nil, 2},
		{"igmirror_events_dropped_total", []string{"reason", "queue_full"}, 2},
		{"igmirror_events_dropped_total", []string{"reason", "shutdown"}, 0},
		{"igmirror_mirror_queue_depth", nil, 1},
		{"igmirror_mirror_queue_capacity", nil, 1},
		{"igmirror_crm_connected", nil, 0},
		{"igmirror_crm_state", []string{"state", "connecting"}, 1},
		{"igmirror_crm_state", []string{"state", "disabled"}, 0},
		{"igmirror_mirror_inserts_total", []string{"outcome", "ok"}, 0},
		{"igmirror_mirror_last_success_timestamp_seconds", nil, 0},
		{"igmirror_messages_total", []string{"source", "webhook", "outcome", "stored"}, 4},
	} {
		if got := ms.value(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The worker looked the first message's user up (no access token: the
	// id is the username) before it tried the CRM.
	eventually(t, 10*time.Second, "one username look-up", func() bool {
		return scrape(t, ta).value(t, "igmirror_username_lookups_total", "outcome", "fallback") == 1
	})
	// The queue had room for one of the delivery's three messages: the two
	// it had no room for were stored as dropped in the delivery's own
	// commit, so they are dropped by the time it is answered.
	got := mids(listPage(t, ta, "mirror_status=dropped").Messages)
	if want := []string{"full-3", "full-2"}; !slices.Equal(got, want) {
		t.Errorf("dropped messages: got %v, want %v", got, want)
	}

	r := adminCall(t, ta, http.MethodGet, "/admin/mirror/stats", nil)
	if r.code != http.StatusOK {
		t.Fatalf("stats: got %d %s", r.code, r.body)
	}
	st := decodeAs[map[string]any](t, r)
	for k, want := range map[string]any{
		"enabled": true, "queue_depth": 1.0, "queue_capacity": 1.0, "workers": 1.0, "published": 2.0, "dropped": 2.0,
		"mirrored": 0.0, "failed": 0.0, "pending": 2.0, "crm_connected": false, "crm_state": "connecting",
		"last_success_at": nil,
	} {
		if got := st[k]; got != want {
			t.Errorf("stats %s: got %v, want %v", k, got, want)
		}
	}
	for _, k := range []string{"retried", "last_error_at", "messages"} {
		if _, ok := st[k]; !ok {
			t.Errorf("stats: no %s", k)
		}
	}
	byReason, _ := st["dropped_by_reason"].(map[string]any)
	if byReason["queue_full"] != 2.0 || byReason["shutdown"] != 0.0 {
		t.Errorf("stats dropped_by_reason: got %v, want queue_full 2, shutdown 0", st["dropped_by_reason"])
	}
}

func TestMetricsMirrorToCRM(t *testing.T) {
	crm := mysqltest.New(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.MirrorWorkers = 1
	fakeGraph(t, &cfg, "graph-token-4b1c", map[string]string{"u1": "shop.customer.one"})
	ta := startApp(t, cfg)
	began := float64(time.Now().Unix())
	eventually(t, 10*time.Second, "the CRM connected", func() bool { return ta.mirrorStatus().Connected })

	// One message at a time, so the look-ups go miss, hit, fallback, fallback.
	start := time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)
	msgs := []dm{
		{mid: "crm-1", user: "u1", text: "one", at: start},
		{mid: "crm-2", user: "u1", text: "two", at: start.Add(time.Second)},
		{mid: "crm-3", user: "u2", text: "three", at: start.Add(2 * time.Second)},
		{mid: "crm-4", user: "u2", text: "four", at: start.Add(3 * time.Second), outbound: true},
	}
	for i := range msgs {
		postDMs(t, ta, msgs[i:i+1])
		eventually(t, 10*time.Second, "the message in the CRM", func() bool { return crm.Count(t) == i+1 })
	}
	eventually(t, 10*time.Second, "every message marked mirrored", func() bool {
		return len(listPage(t, ta, "mirror_status=mirrored").Messages) == len(msgs)
	})

	ms := scrape(t, ta)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"igmirror_mirror_inserts_total", []string{"outcome", "ok"}, 4},
		{"igmirror_mirror_inserts_total", []string{"outcome", "already_present"}, 0},
		{"igmirror_mirror_inserts_total", []string{"outcome", "permanent_error"}, 0},
		{"igmirror_mirror_insert_duration_seconds", nil, 4},
		{"igmirror_mirror_retries_total", nil, 0},
		{"igmirror_events_published_total", nil, 4},
		{"igmirror_mirror_queue_depth", nil, 0},
		{"igmirror_username_lookups_total", []string{"outcome", "miss"}, 1},
		{"igmirror_username_lookups_total", []string{"outcome", "hit"}, 1},
		{"igmirror_username_lookups_total", []string{"outcome", "fallback"}, 2},
		{"igmirror_crm_connected", nil, 1},
		{"igmirror_crm_state", []string{"state", "connected"}, 1},
		{"igmirror_crm_state", []string{"state", "connecting"}, 0},
	} {
		if got := ms.value(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	last := ms.value(t, "igmirror_mirror_last_success_timestamp_seconds")
	if last < began-1 || last > float64(time.Now().Unix())+1 {
		t.Errorf("last success: got %v, want a unix time between %v and now", last, began)
	}
	var users []string
	for _, r := range crm.Rows(t) {
		users = append(users, r.Username)
	}
	if want := []string{"shop.customer.one", "shop.customer.one", "u2", "u2"}; !slices.Equal(users, want) {
		t.Errorf("CRM usernames: got %v, want %v", users, want)
	}
}
