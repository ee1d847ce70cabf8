package main

// End-to-end tests: the whole service started in-process, Meta's sample
// deliveries signed and POSTed to it, the rows read back from SQLite and
// from a real MariaDB standing in for the CRM.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	// The zone test runs the service with TZ=Asia/Kathmandu, also where the
	// system has no zone files (slim CI images).
	_ "time/tzdata"

	"igmirror/config"
	"igmirror/domain"
	"igmirror/instagram"
	"igmirror/internal/testkit/mysqltest"
	"igmirror/sqlite"
)

// Ids of the sample deliveries in testdata/webhooks.
const (
	sampleBusiness  = "17841400000000001"
	sampleBusiness2 = "17841400000000002"
	sampleCustomer  = "5582201937461123"
	sampleCustomer2 = "6610293847561290"
)

// sampleMIDs are the mids of the sample messages, numbered from 1.
var sampleMIDs = []string{"",
	"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwMQZDZD",
	"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwMgZDZD",
	"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwMwZDZD",
	"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwNAZDZD",
	"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwNQZDZD",
	"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwNgZDZD",
	"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAyOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwNwZDZD",
}

// sampleOrder is every sample delivery, in the order the tests post them,
// with the answer each gets.
var sampleOrder = []struct {
	file                       string
	stored, duplicates, unsent int
}{
	{"inbound_text.json", 1, 0, 0},
	{"echo_text.json", 1, 0, 0},
	{"inbound_unicode_escaped.json", 1, 0, 0},
	{"inbound_attachment.json", 1, 0, 0},
	{"inbound_unsend.json", 0, 0, 1},
	{"batch_two_entries.json", 3, 0, 0},
	{"reaction_and_read.json", 0, 0, 0},
	{"comment_changes.json", 0, 0, 0},
	{"dashboard_test_messages.json", 0, 0, 0},
}

// storedSample is what SQLite must hold for one sample message.
type storedSample struct {
	mid               string
	sender, recipient string
	direction         domain.Direction
	user              string
	text              string
	attachments       string
	replyTo           string
	ts                time.Time
	deleted           bool
}

// sampleMessages is every message the samples store, in order.
func sampleMessages() []storedSample {
	ms := func(n int64) time.Time { return time.UnixMilli(n).UTC() }
	return []storedSample{
		{sampleMIDs[1], sampleCustomer, sampleBusiness, domain.Inbound, sampleCustomer, "Hi! Do you ship to Kyiv?", "", "", ms(1763770000123), true},
		{sampleMIDs[2], sampleBusiness, sampleCustomer, domain.Outbound, sampleCustomer, "Yes, delivery takes 2-3 days.", "", "", ms(1763770060511), false},
		{sampleMIDs[3], sampleCustomer, sampleBusiness, domain.Inbound, sampleCustomer, "Привіт! Olá, café? 😍👍", "", "", ms(1763770119876), false},
		{sampleMIDs[4], sampleCustomer, sampleBusiness, domain.Inbound, sampleCustomer, "",
			`[{"type":"image","url":"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1790000000000001&signature=AbC"}]`, "", ms(1763770179001), false},
		{sampleMIDs[5], sampleCustomer, sampleBusiness, domain.Inbound, sampleCustomer, "first", "", "", ms(1763770399001), false},
		{sampleMIDs[6], sampleCustomer, sampleBusiness, domain.Inbound, sampleCustomer, "second", "", sampleMIDs[5], ms(1763770399002), false},
		{sampleMIDs[7], sampleCustomer2, sampleBusiness2, domain.Inbound, sampleCustomer2, "hello from another account", "", "", ms(1763770399100), false},
	}
}

// postSamples posts every sample delivery and checks each answer.
func postSamples(t *testing.T, ta *testApp) {
	t.Helper()
	for _, s := range sampleOrder {
		code, body := ta.post(sample(t, s.file))
		if code != http.StatusOK {
			t.Fatalf("%s: got %d %s, want 200", s.file, code, body)
		}
		want := fmt.Sprintf(`{"duplicates":%d,"stored":%d,"unsent":%d}`, s.duplicates, s.stored, s.unsent)
		if got := strings.TrimSpace(body); got != want {
			t.Errorf("%s: got body %s, want %s", s.file, got, want)
		}
	}
}

// checkStoredSamples compares SQLite with what the samples must leave.
func checkStoredSamples(t *testing.T, ta *testApp, status domain.MirrorStatus) {
	t.Helper()
	got := ta.messages()
	want := sampleMessages()
	if len(got) != len(want) {
		t.Fatalf("SQLite rows: got %d, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.MID() != w.mid || g.SenderID != w.sender || g.RecipientID != w.recipient || g.Direction != w.direction ||
			g.UserID != w.user || g.MessageText != w.text || g.Attachments != w.attachments || g.ReplyToMID != w.replyTo ||
			g.Deleted != w.deleted {
			t.Errorf("SQLite row %d:\n got mid=%s sender=%s recipient=%s dir=%s user=%s text=%q atts=%s reply=%s deleted=%v\n"+
				"want mid=%s sender=%s recipient=%s dir=%s user=%s text=%q atts=%s reply=%s deleted=%v",
				i+1, g.MID(), g.SenderID, g.RecipientID, g.Direction, g.UserID, g.MessageText, g.Attachments, g.ReplyToMID, g.Deleted,
				w.mid, w.sender, w.recipient, w.direction, w.user, w.text, w.attachments, w.replyTo, w.deleted)
		}
		if !g.Timestamp.Equal(w.ts) {
			t.Errorf("SQLite row %d timestamp: got %v, want %v", i+1, g.Timestamp, w.ts)
		}
		if g.MirrorStatus != status {
			t.Errorf("SQLite row %d mirror_status: got %q, want %q", i+1, g.MirrorStatus, status)
		}
	}
}

// wantCRMSamples is the CRM rows the samples must give, usernames from
// names (user id -> username; a missing id falls back to the id).
func wantCRMSamples(names map[string]string) []mysqltest.Row {
	var out []mysqltest.Row
	for _, m := range sampleMessages() {
		dir := "in"
		if m.direction == domain.Outbound {
			dir = "out"
		}
		text := m.text
		if text == "" {
			text = "[image]"
		}
		username := names[m.user]
		if username == "" {
			username = m.user
		}
		out = append(out, mysqltest.Row{UserID: m.user, Username: username, Direction: dir, Message: text,
			CreatedAt: m.ts.Truncate(time.Second)})
	}
	return out
}

// sameCRMRows compares CRM rows ignoring their ids and order: the workers
// insert in parallel.
func sameCRMRows(t *testing.T, got, want []mysqltest.Row) {
	t.Helper()
	key := func(r mysqltest.Row) string {
		return strings.Join([]string{r.CreatedAt.Format(time.RFC3339Nano), r.UserID, r.Direction, r.Message, r.Username}, "|")
	}
	g := make([]string, len(got))
	for i, r := range got {
		if r.CreatedAt.Location() != time.UTC {
			t.Errorf("CRM row %d: created_at not read in UTC", r.ID)
		}
		g[i] = key(r)
	}
	w := make([]string, len(want))
	for i, r := range want {
		w[i] = key(r)
	}
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("CRM rows:\n got %s\nwant %s", strings.Join(g, "\n     "), strings.Join(w, "\n     "))
	}
}

// graphFake is a fake Graph API that answers username look-ups.
type graphFake struct {
	*httptest.Server
	mu       sync.Mutex
	asked    []string // user ids, in order
	badQuery []string // requests without the right fields and token
}

const testAccessToken = "IGQWRtest-access-token-31c4"

// newGraphFake serves GET /v21.0/{id}?fields=username&access_token=...
// with answer(id): a status and a JSON body.
func newGraphFake(t *testing.T, answer func(id string) (int, string)) *graphFake {
	t.Helper()
	g := &graphFake{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/v21.0/")
		q := r.URL.Query()
		g.mu.Lock()
		if !ok || r.Method != http.MethodGet || q.Get("fields") != "username" || q.Get("access_token") != testAccessToken {
			g.badQuery = append(g.badQuery, r.Method+" "+r.URL.Path)
		}
		g.asked = append(g.asked, id)
		g.mu.Unlock()
		status, body := answer(id)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(g.Close)
	return g
}

// askedFor returns the distinct user ids looked up, sorted.
func (g *graphFake) askedFor(t *testing.T) []string {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.badQuery) > 0 {
		t.Errorf("graph fake: malformed look-ups %v", g.badQuery)
	}
	ids := slices.Clone(g.asked)
	slices.Sort(ids)
	return slices.Compact(ids)
}

// withGraph points cfg's username look-up at the fake.
func withGraph(cfg *config.Config, g *graphFake) {
	cfg.InstagramGraphURL = g.URL + "/v21.0"
	cfg.InstagramAccessToken = testAccessToken
}

// statusCount reads how many messages are in one mirror state.
func statusCount(t *testing.T, ta *testApp, s domain.MirrorStatus) int64 {
	t.Helper()
	counts, err := ta.store.CountByStatus(context.Background())
	if err != nil {
		t.Fatalf("CountByStatus: %v", err)
	}
	return counts[s]
}

// waitMirrored waits until n messages are mirrored and the CRM holds n rows.
func waitMirrored(t *testing.T, ta *testApp, crm *mysqltest.DB, n int) {
	t.Helper()
	eventually(t, 15*time.Second, fmt.Sprintf("%d messages mirrored", n), func() bool {
		return statusCount(t, ta, domain.MirrorMirrored) == int64(n) && crm.Count(t) == n
	})
}

// getJSON calls a JSON endpoint and decodes its answer.
func getJSON(t *testing.T, ta *testApp, admin bool, path string) (int, map[string]any) {
	t.Helper()
	var code int
	var body string
	if admin {
		code, body = ta.adminDo(http.MethodGet, path, testAdminToken, nil)
	} else {
		code, body = ta.get(ta.base + path)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("GET %s: body %q is not a JSON object: %v", path, body, err)
	}
	return code, out
}

func mirrorStats(t *testing.T, ta *testApp) map[string]any {
	t.Helper()
	code, st := getJSON(t, ta, true, "/admin/mirror/stats")
	if code != http.StatusOK {
		t.Fatalf("stats: got %d %v", code, st)
	}
	return st
}

// crmState reads the CRM state /readyz reports, checking readiness holds.
func crmState(t *testing.T, ta *testApp) (state string, readyz map[string]any) {
	t.Helper()
	code, body := getJSON(t, ta, false, "/readyz")
	if code != http.StatusOK || body["status"] != "ready" {
		t.Fatalf("/readyz: got %d %v, want 200 ready whatever the CRM does", code, body)
	}
	crm, _ := body["crm"].(map[string]any)
	s, _ := crm["state"].(string)
	return s, body
}

func waitCRMState(t *testing.T, ta *testApp, want string) map[string]any {
	t.Helper()
	var last map[string]any
	eventually(t, 15*time.Second, "crm state "+want, func() bool {
		var s string
		s, last = crmState(t, ta)
		return s == want
	})
	return last
}

// textDelivery is a one-message delivery from the sample customer.
func textDelivery(mid, text string, ts time.Time) []byte {
	b, err := json.Marshal(map[string]any{
		"object": "instagram",
		"entry": []any{map[string]any{
			"id": sampleBusiness, "time": ts.UnixMilli(),
			"messaging": []any{map[string]any{
				"sender":    map[string]string{"id": sampleCustomer},
				"recipient": map[string]string{"id": sampleBusiness},
				"timestamp": ts.UnixMilli(),
				"message":   map[string]any{"mid": mid, "text": text},
			}},
		}},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// postSigned posts a signed delivery from any goroutine.
func postSigned(client *http.Client, base string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/webhooks/instagram", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", instagram.Sign([]byte(testAppSecret), body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = new(bytes.Buffer).ReadFrom(resp.Body)
	return resp.StatusCode, nil
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}

func TestE2ESamplesReachSQLiteAndCRM(t *testing.T) {
	crm := mysqltest.New(t)
	graph := newGraphFake(t, func(id string) (int, string) {
		switch id {
		case sampleCustomer:
			return 200, `{"username":"shop_fan_42","id":"` + id + `"}`
		case sampleCustomer2:
			return 200, `{"username":"other.fan_7","id":"` + id + `"}`
		}
		return 404, `{"error":{"message":"no such user","code":100,"error_subcode":33}}`
	})
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	withGraph(&cfg, graph)
	ta := startApp(t, cfg)

	postSamples(t, ta)
	waitMirrored(t, ta, crm, 7)

	checkStoredSamples(t, ta, domain.MirrorMirrored)
	sameCRMRows(t, crm.Rows(t), wantCRMSamples(map[string]string{
		sampleCustomer: "shop_fan_42", sampleCustomer2: "other.fan_7",
	}))
	// The customer is looked up, never the business account.
	if got, want := graph.askedFor(t), []string{sampleCustomer, sampleCustomer2}; !slices.Equal(got, want) {
		t.Errorf("looked up: got %v, want %v", got, want)
	}
	st := mirrorStats(t, ta)
	if st["enabled"] != true || st["crm_connected"] != true || st["published"] != 7.0 || st["dropped"] != 0.0 || st["mirrored"] != 7.0 {
		t.Errorf("stats: got enabled=%v connected=%v published=%v dropped=%v mirrored=%v, want true true 7 0 7",
			st["enabled"], st["crm_connected"], st["published"], st["dropped"], st["mirrored"])
	}
	noSecretsIn(t, "logs", ta.logs.String(), append(cfg.Secrets(), "Do you ship to Kyiv")...)
}

func TestE2EUsernameFallsBackToUserID(t *testing.T) {
	crm := mysqltest.New(t)
	graph := newGraphFake(t, func(id string) (int, string) {
		if id == sampleCustomer {
			return 500, `{"error":{"message":"An unexpected error has occurred.","type":"OAuthException","code":2}}`
		}
		return 400, `{"error":{"message":"User consent is required to access user profile","type":"OAuthException","code":230}}`
	})
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	withGraph(&cfg, graph)
	ta := startApp(t, cfg)

	postSamples(t, ta)
	waitMirrored(t, ta, crm, 7)

	sameCRMRows(t, crm.Rows(t), wantCRMSamples(nil))
	if got, want := graph.askedFor(t), []string{sampleCustomer, sampleCustomer2}; !slices.Equal(got, want) {
		t.Errorf("looked up: got %v, want %v (the fallback follows a real attempt)", got, want)
	}
	noSecretsIn(t, "logs", ta.logs.String(), testAccessToken)
}

func TestE2ENoAccessTokenMeansNoLookUp(t *testing.T) {
	crm := mysqltest.New(t)
	graph := newGraphFake(t, func(string) (int, string) { return 200, `{"username":"must_not_be_used"}` })
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.InstagramGraphURL = graph.URL + "/v21.0" // but no token
	ta := startApp(t, cfg)

	code, _ := ta.post(sample(t, "inbound_text.json"))
	if code != http.StatusOK {
		t.Fatalf("post: got %d", code)
	}
	waitMirrored(t, ta, crm, 1)
	rows := crm.Rows(t)
	if rows[0].Username != sampleCustomer {
		t.Errorf("username: got %q, want the user id %q", rows[0].Username, sampleCustomer)
	}
	if got := graph.askedFor(t); len(got) != 0 {
		t.Errorf("Graph API called %v without a token", got)
	}
}

// tzChildEnv marks the child process of TestE2ECRMTimeIsUTCInAnyHostZone.
const tzChildEnv = "IGMIRROR_E2E_TZ_CHILD"

// TestE2ECRMTimeIsUTCInAnyHostZone runs the service in a process whose
// local zone is five hours and three quarters east of UTC (Go reads TZ
// once, at start-up, so the test runs itself again as a child process):
// the CRM must still hold the Instagram instant in UTC.
func TestE2ECRMTimeIsUTCInAnyHostZone(t *testing.T) {
	if os.Getenv(tzChildEnv) == "1" {
		tzChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestE2ECRMTimeIsUTCInAnyHostZone$", "-test.v", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), tzChildEnv+"=1", "TZ=Asia/Kathmandu")
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("child in TZ=Asia/Kathmandu failed: %v\n%s", err, out)
	case bytes.Contains(out, []byte("--- SKIP")):
		t.Skipf("child skipped:\n%s", out)
	case !bytes.Contains(out, []byte("--- PASS: TestE2ECRMTimeIsUTCInAnyHostZone")):
		t.Fatalf("child did not report a pass:\n%s", out)
	}
}

func tzChild(t *testing.T) {
	if _, off := time.UnixMilli(1763770000123).Zone(); off != 5*3600+45*60 {
		t.Fatalf("child: local zone offset %ds, want +05:45 (is tzdata installed?)", off)
	}
	crm := mysqltest.New(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	ta := startApp(t, cfg)
	postSamples(t, ta)
	waitMirrored(t, ta, crm, 7)
	checkStoredSamples(t, ta, domain.MirrorMirrored)
	sameCRMRows(t, crm.Rows(t), wantCRMSamples(nil))
	// The instant itself, independent of any session's zone.
	var unix int64
	if err := crm.SQL.QueryRow("SELECT UNIX_TIMESTAMP(created_at) FROM " + crm.Table + " WHERE message = 'first'").Scan(&unix); err != nil {
		t.Fatal(err)
	}
	if want := int64(1763770399); unix != want {
		t.Errorf("UNIX_TIMESTAMP(created_at) of \"first\": got %d, want %d", unix, want)
	}
}

func TestE2ERedeliveryStoresAndMirrorsOnce(t *testing.T) {
	crm := mysqltest.New(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	ta := startApp(t, cfg)

	body := sample(t, "inbound_text.json")
	for i, want := range []string{`{"duplicates":0,"stored":1,"unsent":0}`, `{"duplicates":1,"stored":0,"unsent":0}`} {
		code, got := ta.post(body)
		if code != http.StatusOK || strings.TrimSpace(got) != want {
			t.Errorf("delivery %d: got %d %s, want 200 %s", i+1, code, got, want)
		}
	}

	// The same batch from several goroutines at once, as Meta's retries
	// can overlap.
	batch := sample(t, "batch_two_entries.json")
	const senders = 8
	var wg sync.WaitGroup
	codes := make([]int, senders)
	errs := make([]error, senders)
	for i := range senders {
		wg.Go(func() { codes[i], errs[i] = postSigned(ta.client, ta.base, batch) })
	}
	wg.Wait()
	for i := range senders {
		if errs[i] != nil || codes[i] != http.StatusOK {
			t.Errorf("concurrent delivery %d: got %d, %v, want 200", i, codes[i], errs[i])
		}
	}

	waitMirrored(t, ta, crm, 4)
	if got := len(ta.messages()); got != 4 {
		t.Errorf("SQLite rows: got %d, want 4", got)
	}
	if got := mirrorStats(t, ta)["published"]; got != 4.0 {
		t.Errorf("events published: got %v, want 4 (a duplicate publishes nothing)", got)
	}
	want := wantCRMSamples(nil)
	sameCRMRows(t, crm.Rows(t), []mysqltest.Row{want[0], want[4], want[5], want[6]})
}

func TestE2ESignatureChecks(t *testing.T) {
	body := sample(t, "inbound_text.json")
	good := instagram.Sign([]byte(testAppSecret), body)
	for _, tc := range []struct {
		name     string
		secret   string
		unsigned bool
		sig      string
		want     int
		stored   int
	}{
		{"right signature", testAppSecret, false, good, http.StatusOK, 1},
		{"missing signature", testAppSecret, false, "", http.StatusUnauthorized, 0},
		{"wrong signature", testAppSecret, false, instagram.Sign([]byte("another-secret"), body), http.StatusForbidden, 0},
		{"signature of another body", testAppSecret, false, instagram.Sign([]byte(testAppSecret), sample(t, "echo_text.json")), http.StatusForbidden, 0},
		{"garbage signature", testAppSecret, false, "sha256=zz", http.StatusForbidden, 0},
		{"sha1 signature", testAppSecret, false, "sha1=" + strings.TrimPrefix(good, "sha256="), http.StatusForbidden, 0},
		{"unsigned allowed but a secret is set", testAppSecret, true, "", http.StatusUnauthorized, 0},
		{"no secret, unsigned not allowed", "", false, "", http.StatusServiceUnavailable, 0},
		{"no secret, signed anyway", "", false, good, http.StatusServiceUnavailable, 0},
		{"no secret, unsigned allowed", "", true, "", http.StatusOK, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.InstagramAppSecret = tc.secret
			cfg.InstagramAllowUnsigned = tc.unsigned
			ta := startApp(t, cfg)
			code, resp := ta.postWithSig(body, tc.sig)
			if code != tc.want {
				t.Errorf("status: got %d %s, want %d", code, resp, tc.want)
			}
			if code != http.StatusOK {
				var e map[string]string
				if err := json.Unmarshal([]byte(resp), &e); err != nil || e["error"] == "" {
					t.Errorf("error body: got %q, want {\"error\": ...}", resp)
				}
			}
			if got := len(ta.messages()); got != tc.stored {
				t.Errorf("stored: got %d, want %d", got, tc.stored)
			}
			if tc.unsigned && tc.secret == "" && !strings.Contains(ta.logs.String(), "UNSIGNED WEBHOOK DELIVERIES ARE ACCEPTED") {
				t.Error("INSTAGRAM_ALLOW_UNSIGNED without a secret was not logged loudly at start-up")
			}
		})
	}
}

func TestE2EHandshake(t *testing.T) {
	ta := startApp(t, testConfig(t))
	noToken := testConfig(t)
	noToken.InstagramVerifyToken = ""
	taNoToken := startApp(t, noToken)
	const challenge = "1158201444 chall/enge+ü"
	for _, tc := range []struct {
		name  string
		app   *testApp
		mode  string
		token string
		want  int
	}{
		{"right token", ta, "subscribe", testVerifyToken, http.StatusOK},
		{"wrong token", ta, "subscribe", "nope", http.StatusForbidden},
		{"empty token", ta, "subscribe", "", http.StatusForbidden},
		{"token with a suffix", ta, "subscribe", testVerifyToken + "x", http.StatusForbidden},
		{"wrong mode", ta, "unsubscribe", testVerifyToken, http.StatusForbidden},
		{"no token configured, empty sent", taNoToken, "subscribe", "", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"hub.mode": {tc.mode}, "hub.verify_token": {tc.token}, "hub.challenge": {challenge}}
			code, body := tc.app.get(tc.app.base + "/webhooks/instagram?" + q.Encode())
			if code != tc.want {
				t.Fatalf("status: got %d %s, want %d", code, body, tc.want)
			}
			if code == http.StatusOK && body != challenge {
				t.Errorf("body: got %q, want the challenge %q exactly", body, challenge)
			}
			if code != http.StatusOK && strings.Contains(body, challenge) {
				t.Errorf("refused handshake echoed the challenge: %q", body)
			}
		})
	}
	noSecretsIn(t, "logs", ta.logs.String(), testVerifyToken)
}

func TestE2EMirrorOffWritesNothingToMySQL(t *testing.T) {
	crm := mysqltest.New(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.CRMEnabled = false // configured, but off
	ta := startApp(t, cfg)

	postSamples(t, ta)
	checkStoredSamples(t, ta, domain.MirrorDisabled)

	st := mirrorStats(t, ta)
	if st["enabled"] != false || st["crm_state"] != "disabled" || st["crm_connected"] != false || st["published"] != 0.0 {
		t.Errorf("stats: got enabled=%v state=%v connected=%v published=%v, want false disabled false 0",
			st["enabled"], st["crm_state"], st["crm_connected"], st["published"])
	}
	if s, _ := crmState(t, ta); s != "disabled" {
		t.Errorf("/readyz crm state: got %q, want disabled", s)
	}
	code, body := ta.adminDo(http.MethodPost, "/admin/mirror/resync", testAdminToken, nil)
	if code != http.StatusConflict {
		t.Errorf("resync with the mirror off: got %d %s, want 409", code, body)
	}
	if n := crm.Count(t); n != 0 {
		t.Errorf("CRM rows with the mirror off: got %d, want 0", n)
	}
}

func TestE2ECRMUnreachableAtStartUp(t *testing.T) {
	cfg := testConfig(t)
	cfg.CRMEnabled = true
	cfg.CRMHost, cfg.CRMPort = "127.0.0.1", closedPort(t)
	cfg.CRMUser, cfg.CRMPassword, cfg.CRMDatabase = "crm", "crm-password-x1", "crm"
	cfg.CRMTLS = "false"
	cfg.MirrorDrainTimeout = 200 * time.Millisecond
	cfg.MirrorInsertTimeout = time.Second
	ta := startApp(t, cfg)

	ready := waitCRMState(t, ta, "unreachable")
	crmInfo := ready["crm"].(map[string]any)
	if _, leaked := crmInfo["last_error"]; crmInfo["connected"] != false || leaked {
		t.Errorf("/readyz crm: got %v, want connected=false and no error text", crmInfo)
	}
	if e := fmt.Sprint(mirrorStats(t, ta)["crm_last_error"]); !strings.Contains(e, "refused") {
		t.Errorf("stats crm_last_error: got %q, want an error saying the connection was refused", e)
	}

	for _, f := range []string{"inbound_text.json", "echo_text.json", "inbound_attachment.json"} {
		if code, body := ta.post(sample(t, f)); code != http.StatusOK {
			t.Fatalf("%s: got %d %s, want 200 with the CRM down", f, code, body)
		}
	}
	if got := len(ta.messages()); got != 3 {
		t.Fatalf("stored: got %d, want 3", got)
	}
	// The mirror keeps them pending and keeps trying.
	eventually(t, 10*time.Second, "a mirror attempt", func() bool {
		for _, m := range ta.messages() {
			if m.MirrorAttempts > 0 {
				return true
			}
		}
		return false
	})
	for _, m := range ta.messages() {
		if m.MirrorStatus != domain.MirrorPending {
			t.Errorf("message %d: mirror_status %q, want pending while the CRM is away", m.ID, m.MirrorStatus)
		}
	}
	st := mirrorStats(t, ta)
	if st["crm_connected"] != false || st["crm_state"] != "unreachable" || st["pending"] != 3.0 {
		t.Errorf("stats: got connected=%v state=%v pending=%v, want false unreachable 3", st["crm_connected"], st["crm_state"], st["pending"])
	}
	if n := strings.Count(ta.logs.String(), "crm mirror unreachable"); n != 1 {
		t.Errorf("unreachable logged %d times, want once (per change of state)", n)
	}
	noSecretsIn(t, "logs", ta.logs.String(), cfg.Secrets()...)
}

func TestE2ECRMComesBackAfterStartUp(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	proxy.SetRefuse(true)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.CRMHost, cfg.CRMPort = proxy.Host(), proxy.Port()
	cfg.MirrorInsertTimeout = time.Second
	ta := startApp(t, cfg)

	waitCRMState(t, ta, "unreachable")
	if code, body := ta.post(sample(t, "inbound_text.json")); code != http.StatusOK {
		t.Fatalf("post: got %d %s", code, body)
	}
	eventually(t, 10*time.Second, "a mirror attempt", func() bool { return ta.messages()[0].MirrorAttempts > 0 })
	proxy.SetRefuse(false)

	waitMirrored(t, ta, crm, 1)
	waitCRMState(t, ta, "connected")
	sameCRMRows(t, crm.Rows(t), wantCRMSamples(nil)[:1])
}

func TestE2ECRMWrongPassword(t *testing.T) {
	crm := mysqltest.New(t)
	user := fmt.Sprintf("igm_%08x", rand.Uint32()) // accounts are server-wide: unique per run
	crm.CreateUser(t, user, "the-right-password")
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.CRMUser, cfg.CRMPassword = user, "a-wrong-password-5e"
	cfg.MirrorDrainTimeout = 200 * time.Millisecond
	ta := startApp(t, cfg)

	ready := waitCRMState(t, ta, "misconfigured")
	if e, ok := ready["crm"].(map[string]any)["last_error"]; ok {
		t.Errorf("/readyz crm last_error: got %q on the public listener, want none", e)
	}
	if e := fmt.Sprint(mirrorStats(t, ta)["crm_last_error"]); !strings.Contains(e, "1045") {
		t.Errorf("stats crm_last_error: got %q, want it to mention 1045 (access denied)", e)
	}

	for _, f := range []string{"inbound_text.json", "echo_text.json", "batch_two_entries.json"} {
		if code, body := ta.post(sample(t, f)); code != http.StatusOK {
			t.Fatalf("%s: got %d %s, want 200 with the CRM refusing", f, code, body)
		}
	}
	eventually(t, 10*time.Second, "messages marked failed", func() bool {
		return statusCount(t, ta, domain.MirrorFailed) == 5
	})
	for _, m := range ta.messages() {
		if m.MirrorStatus != domain.MirrorFailed || !strings.Contains(m.MirrorLastError, "1045") {
			t.Errorf("message %d: status %q error %q, want failed with 1045", m.ID, m.MirrorStatus, m.MirrorLastError)
		}
	}
	st := mirrorStats(t, ta)
	if st["crm_connected"] != false || st["crm_state"] != "misconfigured" || st["failed"] != 5.0 {
		t.Errorf("stats: got connected=%v state=%v failed=%v, want false misconfigured 5", st["crm_connected"], st["crm_state"], st["failed"])
	}
	if n := strings.Count(ta.logs.String(), "crm mirror refused by the server"); n != 1 {
		t.Errorf("refusal logged %d times for 5 messages, want once", n)
	}
	if n := crm.Count(t); n != 0 {
		t.Errorf("CRM rows: got %d, want 0", n)
	}
	noSecretsIn(t, "logs", ta.logs.String(), append(cfg.Secrets(), "the-right-password")...)
}

func TestE2EStalledCRMDropsAreCountedAndRecovered(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.CRMHost, cfg.CRMPort = proxy.Host(), proxy.Port()
	cfg.MirrorQueueSize = 4
	cfg.MirrorWorkers = 1
	cfg.MirrorBatchSize = 1
	cfg.MirrorInsertTimeout = time.Second
	cfg.MirrorDrainTimeout = 300 * time.Millisecond
	ta := startApp(t, cfg)
	waitCRMState(t, ta, "connected")

	proxy.Blackhole(true)
	const n = 50
	base := time.Date(2025, 11, 22, 10, 0, 0, 0, time.UTC)
	texts := make([]string, n)
	for i := range n {
		texts[i] = fmt.Sprintf("stalled message %02d", i)
		code, body := ta.post(textDelivery(fmt.Sprintf("mid-stall-%02d", i), texts[i], base.Add(time.Duration(i)*time.Second)))
		if code != http.StatusOK || !strings.Contains(body, `"stored":1`) {
			t.Fatalf("delivery %d: got %d %s, want 200 stored 1 while the CRM stalls", i, code, body)
		}
	}

	st := mirrorStats(t, ta)
	published, dropped := int64(st["published"].(float64)), int64(st["dropped"].(float64))
	if published+dropped != n {
		t.Fatalf("published %d + dropped %d = %d, want %d", published, dropped, published+dropped, n)
	}
	// The worker holds one message (batches of 1) and the queue four more.
	if published < 4 || published > 5 {
		t.Errorf("published: got %d, want 4 or 5 (queue of 4 plus the one in the worker's hands)", published)
	}
	if got := ta.bus.Dropped("queue_full"); int64(got) != dropped {
		t.Errorf("bus drop counter: got %d, stats say %d", got, dropped)
	}
	// Each message the queue had no room for was stored as dropped by the
	// commit its 200 waited for.
	if got := statusCount(t, ta, domain.MirrorDropped); got != dropped {
		t.Errorf("dropped rows: got %d, want the %d dropped", got, dropped)
	}
	if got := statusCount(t, ta, domain.MirrorPending); got != published {
		t.Errorf("pending rows: got %d, want the %d published", got, published)
	}
	if got := len(ta.messages()); got != n {
		t.Errorf("stored: got %d, want %d", got, n)
	}
	if c := crm.Count(t); c != 0 {
		t.Errorf("CRM rows during the stall: got %d, want 0", c)
	}

	// The CRM recovers; an operator resyncs until everything is over.
	proxy.Blackhole(false)
	deadline := time.Now().Add(30 * time.Second)
	for statusCount(t, ta, domain.MirrorMirrored) < n {
		if time.Now().After(deadline) {
			t.Fatalf("after recovery: %d of %d mirrored", statusCount(t, ta, domain.MirrorMirrored), n)
		}
		code, body := ta.adminDo(http.MethodPost, "/admin/mirror/resync", testAdminToken, nil)
		if code != http.StatusOK {
			t.Fatalf("resync: got %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c := crm.Count(t); c != n {
		t.Fatalf("CRM rows: got %d, want exactly %d", c, n)
	}
	want := make([]mysqltest.Row, n)
	for i := range n {
		want[i] = mysqltest.Row{UserID: sampleCustomer, Username: sampleCustomer, Direction: "in", Message: texts[i],
			CreatedAt: base.Add(time.Duration(i) * time.Second)}
	}
	sameCRMRows(t, crm.Rows(t), want)
	if got := strings.Count(ta.logs.String(), "mirror queue full"); got != 1 {
		t.Errorf("%d drops logged in %d lines, want one rate-limited line", dropped, got)
	}
}

func TestE2EShutdownLeavesQueuedPendingAndRestartMirrorsThem(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.CRMHost, cfg.CRMPort = proxy.Host(), proxy.Port()
	cfg.MirrorWorkers = 2
	cfg.MirrorInsertTimeout = time.Second
	cfg.MirrorDrainTimeout = 300 * time.Millisecond
	first := startApp(t, cfg)
	waitCRMState(t, first, "connected")

	proxy.Blackhole(true)
	const n = 10
	base := time.Date(2025, 11, 23, 8, 30, 0, 0, time.UTC)
	want := make([]mysqltest.Row, n)
	for i := range n {
		text := fmt.Sprintf("queued at shutdown %d", i)
		ts := base.Add(time.Duration(i) * time.Minute)
		if code, body := first.post(textDelivery(fmt.Sprintf("mid-shut-%d", i), text, ts)); code != http.StatusOK {
			t.Fatalf("delivery %d: got %d %s", i, code, body)
		}
		want[i] = mysqltest.Row{UserID: sampleCustomer, Username: sampleCustomer, Direction: "in", Message: text, CreatedAt: ts}
	}
	if got := mirrorStats(t, first)["published"]; got != float64(n) {
		t.Fatalf("published: got %v, want %d (all queued)", got, n)
	}

	done := make(chan error, 1)
	go func() { done <- first.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown did not return with the CRM stalled")
	}

	// Nothing is lost: every message waits in SQLite as pending.
	store, err := sqlite.Open(sqlite.Options{Path: cfg.SQLitePath})
	if err != nil {
		t.Fatal(err)
	}
	counts, err := store.CountByStatus(context.Background())
	if cerr := store.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if counts[domain.MirrorPending] != n {
		t.Fatalf("after shutdown: %v, want all %d pending", counts, n)
	}
	if c := crm.Count(t); c != 0 {
		t.Fatalf("CRM rows while stalled: got %d, want 0", c)
	}

	proxy.Blackhole(false)
	second := startApp(t, cfg)
	waitMirrored(t, second, crm, n)
	sameCRMRows(t, crm.Rows(t), want)
	if st := mirrorStats(t, second); st["reconcile_offers"] != float64(n) {
		t.Errorf("start-up pass offered %v, want %d", st["reconcile_offers"], n)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	const secret = "run-secret-token-81"
	for _, tc := range []struct {
		env     []string
		varName string
	}{
		{[]string{"MIRROR_WORKERS=0"}, "MIRROR_WORKERS"},
		{[]string{"MIRROR_QUEUE_SIZE=0"}, "MIRROR_QUEUE_SIZE"},
		{[]string{"MIRROR_DRAIN_TIMEOUT=abc"}, "MIRROR_DRAIN_TIMEOUT"},
		{[]string{"CRM_MYSQL_ENABLED=true", "CRM_MYSQL_USER=u", "CRM_MYSQL_PASSWORD=" + secret}, "CRM_MYSQL_DATABASE"},
		{[]string{"CRM_MYSQL_TABLE=x; drop", "ADMIN_TOKEN=" + secret}, "CRM_MYSQL_TABLE"},
	} {
		t.Run(tc.varName, func(t *testing.T) {
			var out bytes.Buffer
			code := run(context.Background(), tc.env, &out)
			if code == 0 {
				t.Errorf("exit code: got 0, want non-zero")
			}
			text := strings.TrimRight(out.String(), "\n")
			if strings.Contains(text, "\n") || !strings.Contains(text, tc.varName) {
				t.Errorf("output: got %q, want one line naming %s", out.String(), tc.varName)
			}
			if strings.Contains(text, secret) {
				t.Errorf("output shows a secret: %q", text)
			}
		})
	}
}

func TestRunStartsAndStopsCleanly(t *testing.T) {
	const secret = "run-admin-token-4410"
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // ask for shutdown at once: run must start, then stop cleanly
	var out bytes.Buffer
	code := run(ctx, []string{
		"HTTP_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0", "ADMIN_TOKEN=" + secret,
		"SQLITE_PATH=" + t.TempDir() + "/run.db", "INSTAGRAM_APP_SECRET=" + secret + "-app",
	}, &out)
	if code != 0 {
		t.Fatalf("exit code: got %d, want 0\n%s", code, out.String())
	}
	logs := out.String()
	if n := strings.Count(logs, `"msg":"starting igmirror"`); n != 1 {
		t.Errorf("effective config logged %d times, want once", n)
	}
	if !strings.Contains(logs, `"ADMIN_TOKEN":"***"`) {
		t.Errorf("start-up log does not show the masked admin token")
	}
	if !strings.Contains(logs, `"msg":"stopped"`) {
		t.Errorf("no \"stopped\" line at the end")
	}
	noSecretsIn(t, "run output", logs, secret)
}

// TestRunPortTakenWithMirrorOn: a listener that cannot bind stops start-up
// with exit code 1 and a line naming the setting, also when the mirror,
// which starts after the listeners, is on.
func TestRunPortTakenWithMirrorOn(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, name := range []string{"HTTP_ADDR", "ADMIN_ADDR"} {
		t.Run(name, func(t *testing.T) {
			env := []string{
				"HTTP_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0", "ADMIN_TOKEN=run-admin-token-7",
				"SQLITE_PATH=" + t.TempDir() + "/run.db", "INSTAGRAM_APP_SECRET=run-app-secret-7",
				// The CRM need not answer: the service starts whatever its state.
				"CRM_MYSQL_ENABLED=true", "CRM_MYSQL_HOST=127.0.0.1", "CRM_MYSQL_PORT=1",
				"CRM_MYSQL_USER=u", "CRM_MYSQL_DATABASE=crm",
				name + "=" + taken.Addr().String(),
			}
			var out bytes.Buffer
			code := run(context.Background(), env, &out)
			if code != 1 {
				t.Errorf("exit code: got %d, want 1\n%s", code, out.String())
			}
			if !strings.Contains(out.String(), "listen "+name) {
				t.Errorf("output does not name %s:\n%s", name, out.String())
			}
		})
	}
}

// TestE2ELargestMetaBatch posts what Meta may put in one POST: 1000
// messages, each of 1000 characters that Meta escapes as \uXXXX (about
// 6 MB). It must be admitted, stored in one go and mirrored row for row;
// a body over HTTP_MAX_BODY_BYTES is refused with 413 and stores nothing.
func TestE2ELargestMetaBatch(t *testing.T) {
	crm := mysqltest.New(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	ta := startApp(t, cfg)

	const n = 1000
	text := strings.Repeat("Привіт", 1000/6) + "😍😍😍😍"[:16] // 1000 characters
	if got := len([]rune(text)); got != 1000 {
		t.Fatalf("fixture: %d characters, want 1000", got)
	}
	base := time.Date(2025, 11, 24, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	b.WriteString(`{"object":"instagram","entry":[{"id":"` + sampleBusiness + `","time":1763985600000,"messaging":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sender":{"id":"%s"},"recipient":{"id":"%s"},"timestamp":%d,"message":{"mid":"mid-big-%04d","text":"%s"}}`,
			sampleCustomer, sampleBusiness, base.Add(time.Duration(i)*time.Second).UnixMilli(), i, metaEscape(text))
	}
	b.WriteString(`]}]}`)
	body := []byte(b.String())
	if len(body) < 6_000_000 || int64(len(body)) > cfg.HTTPMaxBodySize {
		t.Fatalf("fixture: %d bytes, want about 6 MB and within the limit %d", len(body), cfg.HTTPMaxBodySize)
	}

	code, resp := ta.post(body)
	if code != http.StatusOK || strings.TrimSpace(resp) != `{"duplicates":0,"stored":1000,"unsent":0}` {
		t.Fatalf("largest batch: got %d %s, want 200 with 1000 stored", code, resp)
	}
	waitMirrored(t, ta, crm, n)
	rows := crm.Rows(t)
	seen := map[time.Time]bool{}
	for _, r := range rows {
		if r.Message != text || r.UserID != sampleCustomer || r.Direction != "in" {
			t.Fatalf("CRM row %d: user %s dir %s text of %d chars, want the customer's 1000-character inbound text",
				r.ID, r.UserID, r.Direction, len([]rune(r.Message)))
		}
		seen[r.CreatedAt] = true
	}
	if len(seen) != n || !seen[base] || !seen[base.Add((n-1)*time.Second)] {
		t.Errorf("CRM created_at: %d distinct, want %d from %v on", len(seen), n, base)
	}

	small := testConfig(t)
	small.HTTPMaxBodySize = 1 << 20
	tb := startApp(t, small)
	if code, resp := tb.post(body); code != http.StatusRequestEntityTooLarge {
		t.Errorf("over the limit: got %d %s, want 413", code, resp)
	}
	if got := len(tb.messages()); got != 0 {
		t.Errorf("over the limit: stored %d, want 0", got)
	}
}

// metaEscape writes s the way Meta does: every non-ASCII character as
// \uXXXX, characters beyond the BMP as a surrogate pair.
func metaEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x80:
			b.WriteRune(r)
		case r > 0xFFFF:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}
