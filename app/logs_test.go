package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"igmirror/instagram"
	"igmirror/internal/testkit/mysqltest"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// logLines parses a JSON log, one object a line.
func logLines(t testing.TB, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestLogsCarryNoSecretsNorText(t *testing.T) {
	crm := mysqltest.New(t)
	crmUser := fmt.Sprintf("igm_logs_%d", time.Now().UnixNano()%1_000_000_000)
	const crmPassword = "crm-pass-Zq81x!"
	crm.CreateUser(t, crmUser, crmPassword)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.CRMUser, cfg.CRMPassword = crmUser, crmPassword
	fakeGraph(t, &cfg, "graph-token-LogTest-77", map[string]string{"u1": "alice.shop"})
	if got := len(cfg.Secrets()); got != 5 {
		t.Fatalf("configured secrets: got %d, want 5 (admin, app secret, verify, access token, CRM password)", got)
	}
	ta := startApp(t, cfg)

	var ids []string // X-Request-Id of every answer
	do := func(method, url string, h map[string]string, body []byte, wantCode int) opsResp {
		t.Helper()
		r := opsDo(t, method, url, h, body)
		if r.code != wantCode {
			t.Fatalf("%s %s: got %d %s, want %d", method, url, r.code, r.body, wantCode)
		}
		ids = append(ids, r.header.Get("X-Request-Id"))
		return r
	}
	signed := func(body []byte) map[string]string {
		return map[string]string{"X-Hub-Signature-256": instagram.Sign([]byte(testAppSecret), body)}
	}
	hook := ta.base + "/webhooks/instagram"
	markers := []string{"marker-A1", "marker-B2", "marker-C3", "marker-D4", "marker-E5", "marker-F6", "marker-G7", "marker-H8"}

	// The subscription handshake carries the verify token in its query.
	q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {testVerifyToken}, "hub.challenge": {"challenge-1"}}
	if r := do(http.MethodGet, hook+"?"+q.Encode(), nil, nil, http.StatusOK); string(r.body) != "challenge-1" {
		t.Fatalf("handshake: got %q, want the challenge", r.body)
	}
	q.Set("hub.verify_token", "guessed-verify-token-3")
	do(http.MethodGet, hook+"?"+q.Encode(), nil, nil, http.StatusForbidden)

	at := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	body := deliveryOf(t,
		dm{mid: "log-1", user: "u1", text: "my address is 5 Elm St, marker-A1", at: at},
		dm{mid: "log-2", user: "u2", text: "card ends 4242 marker-B2", at: at.Add(time.Second)},
		dm{mid: "log-3", user: "u1", text: "we ship tomorrow marker-C3", at: at.Add(2 * time.Second), outbound: true},
		dm{mid: "log-4", user: "u3", text: "Привіт 😀 marker-D4", at: at.Add(3 * time.Second)},
	)
	do(http.MethodPost, hook, signed(body), body, http.StatusOK)
	forged := deliveryOf(t, dm{mid: "log-x", user: "u1", text: "forged marker-E5", at: at})
	do(http.MethodPost, hook, map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("ab", 32)}, forged, http.StatusForbidden)
	broken := []byte(`{"object":"instagram","entry":[{"messaging":[{"message":{"text":"broken marker-F6"`)
	do(http.MethodPost, hook, signed(broken), broken, http.StatusBadRequest)

	admin := ta.admin + "/admin/messages"
	post, _ := json.Marshal(map[string]any{"sender_id": "u9", "recipient_id": bizID, "direction": "inbound", "message_text": "admin note marker-G7"})
	do(http.MethodPost, admin, bearer(testAdminToken), post, http.StatusCreated)
	bad, _ := json.Marshal(map[string]any{"sender_id": "u9", "recipient_id": bizID, "direction": "up", "message_text": "marker-H8"})
	do(http.MethodPost, admin, bearer(testAdminToken), bad, http.StatusBadRequest)
	if r := do(http.MethodGet, admin, bearer(testAdminToken), nil, http.StatusOK); !strings.Contains(string(r.body), "marker-G7") {
		t.Fatalf("list: the texts should be in the answer (only logs keep them out): %s", r.body)
	}
	do(http.MethodGet, admin, bearer("guessed-admin-token-9"), nil, http.StatusUnauthorized)

	// Request ids: a well-formed incoming one is kept, others replaced.
	if r := do(http.MethodGet, ta.base+"/healthz", map[string]string{"X-Request-Id": "trace-abc_123"}, nil, http.StatusOK); r.header.Get("X-Request-Id") != "trace-abc_123" {
		t.Errorf("X-Request-Id: got %q, want the caller's trace-abc_123", r.header.Get("X-Request-Id"))
	}
	generated := regexp.MustCompile(`^[0-9a-f]{16}$`)
	for _, in := range []string{"has spaces in it", strings.Repeat("a", 65), `quote"d`} {
		r := do(http.MethodGet, ta.base+"/healthz", map[string]string{"X-Request-Id": in}, nil, http.StatusOK)
		if got := r.header.Get("X-Request-Id"); !generated.MatchString(got) {
			t.Errorf("X-Request-Id for incoming %q: got %q, want a generated id", in, got)
		}
	}

	eventually(t, 15*time.Second, "five messages in the CRM", func() bool { return crm.Count(t) == 5 })
	ta.stop() // the shutdown lines are part of what is checked
	logs := ta.logs.String()
	lines := logLines(t, logs)

	noSecretsIn(t, "logs", logs, append(cfg.Secrets(), "guessed-verify-token-3", "guessed-admin-token-9", url.QueryEscape(crmPassword))...)
	for _, m := range markers {
		if strings.Contains(logs, m) {
			t.Errorf("logs contain message text (%s)", m)
		}
	}
	for _, sensitive := range []string{"5 Elm St", "card ends", "Привіт", "we ship tomorrow"} {
		if strings.Contains(logs, sensitive) {
			t.Errorf("logs contain message text %q", sensitive)
		}
	}

	var starts int
	var access []map[string]any
	var lookupFailed bool
	for _, l := range lines {
		switch l["msg"] {
		case "starting igmirror":
			starts++
			c, _ := l["config"].(map[string]any)
			for _, k := range []string{"ADMIN_TOKEN", "INSTAGRAM_APP_SECRET", "INSTAGRAM_VERIFY_TOKEN", "INSTAGRAM_ACCESS_TOKEN", "CRM_MYSQL_PASSWORD"} {
				if c[k] != "***" {
					t.Errorf("start-up config %s: got %v, want ***", k, c[k])
				}
			}
			if c["CRM_MYSQL_USER"] != crmUser {
				t.Errorf("start-up config CRM_MYSQL_USER: got %v, want %s (not a secret)", c["CRM_MYSQL_USER"], crmUser)
			}
		case "http request":
			access = append(access, l)
		case "instagram profile look-up failed":
			lookupFailed = true
		}
	}
	if starts != 1 {
		t.Errorf("start-up config lines: got %d, want 1", starts)
	}
	if !lookupFailed {
		t.Errorf("no failed profile look-up logged: the token-echoing Graph error was not exercised")
	}
	if len(access) != len(ids) {
		t.Fatalf("access-log lines: got %d, want one per request (%d)", len(access), len(ids))
	}
	var logged []string
	for _, l := range access {
		id, _ := l["request_id"].(string)
		logged = append(logged, id)
		path, _ := l["path"].(string)
		if strings.Contains(path, "?") || !strings.HasPrefix(path, "/") {
			t.Errorf("access-log path %q: want the path alone", path)
		}
		for _, k := range []string{"listener", "method", "route", "status", "duration_ms", "level"} {
			if _, ok := l[k]; !ok {
				t.Errorf("access-log line without %s: %v", k, l)
			}
		}
	}
	slices.Sort(logged)
	slices.Sort(ids)
	if !slices.Equal(logged, ids) {
		t.Errorf("access-log request ids: got %v, want the X-Request-Id of every answer %v", logged, ids)
	}
}

func TestGormLogsThroughSlogWithPlaceholders(t *testing.T) {
	cfg := testConfig(t)
	ta := startApp(t, cfg)
	postDMs(t, ta, dmSeries("gorm", 1, time.Date(2026, 11, 6, 0, 0, 0, 0, time.UTC)))

	// Another process takes the table away: the next read fails in SQL.
	side, err := gorm.Open(sqlite.Open("file:"+cfg.SQLitePath+"?_busy_timeout=5000"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sideDB, _ := side.DB()
	t.Cleanup(func() { _ = sideDB.Close() })
	if err := side.Exec("ALTER TABLE messages RENAME TO messages_away").Error; err != nil {
		t.Fatal(err)
	}
	const userValue = "bound-value-zz91"
	r := adminCall(t, ta, http.MethodGet, "/admin/messages?user_id="+userValue, nil)
	if got, want := errorOf(t, r), "internal error; the request was not applied, please retry"; r.code != http.StatusInternalServerError || got != want {
		t.Errorf("list without the table: got %d %q, want 500 %q", r.code, got, want)
	}
	if err := side.Exec("ALTER TABLE messages_away RENAME TO messages").Error; err != nil {
		t.Fatal(err)
	}
	if got := len(listPage(t, ta, "user_id=u0").Messages); got != 1 {
		t.Errorf("list after the table is back: got %d, want 1", got)
	}

	var found bool
	for _, l := range logLines(t, ta.logs.String()) {
		if l["msg"] != "sql failed" {
			continue
		}
		found = true
		sql, _ := l["sql"].(string)
		if l["level"] != "WARN" || l["component"] != "gorm" || !strings.Contains(sql, "user_id = ?") || !strings.Contains(fmt.Sprint(l["err"]), "no such table") {
			t.Errorf("GORM line: got %v, want level WARN, component gorm, SQL with placeholders, the error", l)
		}
	}
	if !found {
		t.Errorf("no \"sql failed\" line from GORM in the logs")
	}
	if strings.Contains(ta.logs.String(), userValue) {
		t.Errorf("logs contain the bound value %q", userValue)
	}
}

func TestRunLogFormatAndLevel(t *testing.T) {
	cases := []struct {
		name  string
		env   []string
		check func(t *testing.T, out string)
	}{
		{"json by default", nil, func(t *testing.T, out string) {
			lines := logLines(t, out)
			var levels []string
			for _, l := range lines {
				levels = append(levels, fmt.Sprint(l["level"]))
				if l["msg"] == "starting igmirror" {
					if c, _ := l["config"].(map[string]any); c["ADMIN_TOKEN"] != "***" || c["LOG_FORMAT"] != "json" {
						t.Errorf("config: got %v, want ADMIN_TOKEN *** and LOG_FORMAT json", c)
					}
				}
			}
			if !slices.Contains(levels, "INFO") {
				t.Errorf("levels: got %v, want INFO lines at the default level", levels)
			}
		}},
		{"text", []string{"LOG_FORMAT=text"}, func(t *testing.T, out string) {
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if !strings.HasPrefix(l, "time=") || json.Valid([]byte(l)) {
					t.Errorf("line %q: want slog's text format", l)
				}
			}
			if !strings.Contains(out, `level=INFO msg="starting igmirror"`) || !strings.Contains(out, "config.ADMIN_TOKEN=***") {
				t.Errorf("text log: want the start-up line with the token masked, got\n%s", out)
			}
		}},
		{"every line names the instance", []string{"INSTANCE_ID=igm-logs-7"}, func(t *testing.T, out string) {
			lines := logLines(t, out)
			for _, l := range lines {
				if l["instance_id"] != "igm-logs-7" {
					t.Errorf("line %q: instance_id %v, want igm-logs-7", l["msg"], l["instance_id"])
				}
			}
			if len(lines) == 0 {
				t.Error("no log line")
			}
		}},
		{"warn level", []string{"LOG_LEVEL=warn", "INSTAGRAM_APP_SECRET="}, func(t *testing.T, out string) {
			lines := logLines(t, out)
			for _, l := range lines {
				if l["level"] != "WARN" && l["level"] != "ERROR" {
					t.Errorf("line at %v with LOG_LEVEL=warn: %v", l["level"], l["msg"])
				}
			}
			if len(lines) == 0 || !strings.Contains(out, "no INSTAGRAM_APP_SECRET") {
				t.Errorf("warn log: want the missing-secret warning, got\n%s", out)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := append([]string{
				"HTTP_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0",
				"SQLITE_PATH=" + filepath.Join(t.TempDir(), "run.db"),
				"ADMIN_TOKEN=run-admin-token-31", "INSTAGRAM_APP_SECRET=run-app-secret-31",
			}, c.env...)
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // start, then stop at once
			out := &syncBuffer{}
			if code := run(ctx, env, out); code != 0 {
				t.Fatalf("run: got exit %d, want 0; output:\n%s", code, out.String())
			}
			noSecretsIn(t, "log", out.String(), "run-admin-token-31", "run-app-secret-31")
			c.check(t, out.String())
		})
	}
}

// TestAccessLogLevels: at the default level, an accepted webhook delivery
// writes no access line (routine traffic the metrics count), while a
// rejected delivery, an admin call and a probe each write one.
func TestAccessLogLevels(t *testing.T) {
	out := &syncBuffer{}
	ta := startAppWith(t, testConfig(t), func(a *App) {
		a.log = slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	body := sample(t, "inbound_text.json")
	if code, resp := ta.post(body); code != http.StatusOK {
		t.Fatalf("signed delivery: %d %s", code, resp)
	}
	if code, _ := ta.postWithSig(body, "sha256=00"); code < 400 || code >= 500 {
		t.Fatalf("badly signed delivery: %d, want 4xx", code)
	}
	if code, _ := ta.adminDo(http.MethodGet, "/admin/mirror/stats", testAdminToken, nil); code != http.StatusOK {
		t.Fatalf("stats: %d", code)
	}
	resp, err := ta.client.Get(ta.base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()

	var got []string
	for _, l := range logLines(t, out.String()) {
		if l["msg"] == "http request" {
			got = append(got, fmt.Sprintf("%v %v %v %v", l["level"], l["method"], l["route"], l["status"]))
		}
	}
	want := []string{
		"INFO POST /webhooks/instagram 403",
		"INFO GET /admin/mirror/stats 200",
		"INFO GET /healthz 200",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("access lines at info:\n got %q\nwant %q", got, want)
	}
}

func TestAccessLevel(t *testing.T) {
	cases := []struct {
		listener, method, route string
		status                  int
		want                    slog.Level
	}{
		{listenerPublic, http.MethodPost, webhookRoute, 200, slog.LevelDebug},
		{listenerPublic, http.MethodPost, webhookRoute, 401, slog.LevelInfo},
		{listenerPublic, http.MethodPost, webhookRoute, 413, slog.LevelInfo},
		{listenerPublic, http.MethodPost, webhookRoute, 503, slog.LevelError},
		{listenerPublic, http.MethodGet, webhookRoute, 200, slog.LevelInfo},
		{listenerAdmin, http.MethodPost, "/admin/messages", 201, slog.LevelInfo},
		{listenerAdmin, http.MethodGet, "/admin/messages", 500, slog.LevelError},
	}
	for _, c := range cases {
		if got := accessLevel(c.listener, c.method, c.route, c.status); got != c.want {
			t.Errorf("accessLevel(%s %s %s %d) = %v, want %v", c.listener, c.method, c.route, c.status, got, c.want)
		}
	}
}

// TestAccessLogRemoteIPIgnoresForwardingHeaders: the service is not behind
// a trusted proxy, so a client's X-Forwarded-For or X-Real-IP must not
// choose the remote_ip the access log records on either listener.
func TestAccessLogRemoteIPIgnoresForwardingHeaders(t *testing.T) {
	const spoofed, spoofedReal = "203.0.113.9", "203.0.113.10"
	ta := startApp(t, testConfig(t))
	for _, tc := range []struct{ name, url, requestID string }{
		{"public", ta.base + "/healthz", "xff-public-1"},
		{"admin", ta.admin + "/admin/mirror/stats", "xff-admin-1"},
	} {
		req, err := http.NewRequest(http.MethodGet, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		req.Header.Set("X-Request-Id", tc.requestID)
		req.Header.Set("X-Forwarded-For", spoofed)
		req.Header.Set("X-Real-IP", spoofedReal)
		if code, body := ta.do(req); code != http.StatusOK {
			t.Fatalf("%s: got %d %s, want 200", tc.name, code, body)
		}
	}
	ta.stop()

	seen := map[string]string{}
	for _, l := range logLines(t, ta.logs.String()) {
		if l["msg"] != "http request" {
			continue
		}
		id, _ := l["request_id"].(string)
		ip, _ := l["remote_ip"].(string)
		seen[id] = ip
	}
	for _, id := range []string{"xff-public-1", "xff-admin-1"} {
		got, ok := seen[id]
		if !ok {
			t.Errorf("no access-log line for request %s", id)
			continue
		}
		if parsed := net.ParseIP(got); parsed == nil || !parsed.IsLoopback() {
			t.Errorf("remote_ip of %s: got %q, want the loopback peer (not %s or %s from the headers)", id, got, spoofed, spoofedReal)
		}
	}
}
