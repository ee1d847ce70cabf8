package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"igmirror/config"
	"igmirror/internal/testkit/mysqltest"
)

// TestSlowlorisHeadersAreCutOff sends request headers a byte at a time,
// slower than the header timeout allows, to both listeners: the server
// hangs up before the headers are complete, without answering.
func TestSlowlorisHeadersAreCutOff(t *testing.T) {
	ta := startAppWith(t, testConfig(t), func(a *App) { a.readHeaderTimeout = 300 * time.Millisecond })
	for _, listener := range []struct{ name, base string }{{"public", ta.base}, {"admin", ta.admin}} {
		t.Run(listener.name, func(t *testing.T) {
			u, err := url.Parse(listener.base)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			closed := make(chan []byte, 1)
			go func() {
				got, _ := io.ReadAll(conn) // returns when the server hangs up
				closed <- got
			}()
			if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: igmirror\r\n"); err != nil {
				t.Fatal(err)
			}
			// Header lines a byte every 20 ms, never finished: only the
			// server can end this. The budget is a generous deadline for
			// that, not a measure of it: 20 s is many times the 300 ms
			// allowed, and short of the 30 s ReadTimeout, which must not be
			// what cuts the connection.
			const budget = 20 * time.Second
			header := "X-Slow: " + strings.Repeat("s", 190) + "\r\n"
			giveUp := time.After(budget)
			for i := 0; ; i++ {
				select {
				case got := <-closed:
					if len(got) != 0 {
						t.Fatalf("server answered a request whose headers never finished: %q", got)
					}
					return // cut off mid-headers, as it should be
				case <-giveUp:
					t.Fatalf("after %v of slow headers the connection is still open; want it cut off by the header timeout", budget)
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := conn.Write([]byte{header[i%len(header)]}); err != nil {
					return // the server reset the connection: cut off
				}
			}
		})
	}
}

// securityChunked posts n bytes with no Content-Length, so that the limit
// must be enforced while reading, not from the header.
func securityChunked(t *testing.T, url string, header http.Header, n int) int {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for sent := 0; sent < n; sent += len(chunk) {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		_ = pw.Close()
	}()
	defer pr.Close()
	req, err := http.NewRequest(http.MethodPost, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestBodyLimitsOnBothListeners sends bodies over each listener's limit,
// with and without a Content-Length: 413 each time, nothing stored.
func TestBodyLimitsOnBothListeners(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTPMaxBodySize = 64 << 10
	ta := startApp(t, cfg)
	signed := http.Header{"Content-Type": {"application/json"}, "X-Hub-Signature-256": {"sha256=" + strings.Repeat("0", 64)}}
	admin := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + testAdminToken}}

	// With a Content-Length: refused before reading.
	big := `{"sender_id":"u1","recipient_id":"b1","direction":"inbound","message_text":"` + strings.Repeat("x", adminBodyLimit) + `"}`
	if code, body := ta.adminDo(http.MethodPost, "/admin/messages", testAdminToken, json.RawMessage(big)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("admin POST over 1 MiB: got %d %s, want 413", code, body)
	}
	if code, body := ta.post(bytes.Repeat([]byte("x"), 64<<10+1)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("webhook POST over HTTP_MAX_BODY_BYTES: got %d %.100s, want 413", code, body)
	}
	// Chunked: refused while reading, before the signature is checked.
	if code := securityChunked(t, ta.base+"/webhooks/instagram", signed, 1<<20); code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked webhook POST over the limit: got %d, want 413", code)
	}
	if code := securityChunked(t, ta.admin+"/admin/messages", admin, 2<<20); code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked admin POST over the limit: got %d, want 413", code)
	}
	if code := securityChunked(t, ta.admin+"/admin/mirror/resync", admin, 2<<20); code != http.StatusRequestEntityTooLarge && code != http.StatusConflict {
		t.Errorf("chunked resync POST over the limit: got %d, want 413 (or 409: mirror off)", code)
	}
	if got := len(ta.messages()); got != 0 {
		t.Errorf("stored: got %d, want 0", got)
	}
}

// TestAdminListenerNeedsTokenOffLoopback checks, through run as the
// binary starts, that an admin listener reachable from other hosts is
// refused without ADMIN_TOKEN, and allowed on loopback or with a token.
func TestAdminListenerNeedsTokenOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr, token string
		wantRefused bool
	}{
		{"0.0.0.0:8081", "", true},
		{":8081", "", true},
		{"[::]:8081", "", true},
		{"192.0.2.10:8081", "", true},
		{"127.0.0.1:8081", "", false},
		{"localhost:8081", "", false},
		{"[::1]:8081", "", false},
		{"0.0.0.0:8081", "a-token", false},
	} {
		t.Run(tc.addr+"/token="+tc.token, func(t *testing.T) {
			env := []string{"ADMIN_ADDR=" + tc.addr, "ADMIN_TOKEN=" + tc.token}
			_, err := config.Load(env)
			if refused := err != nil; refused != tc.wantRefused {
				t.Fatalf("config.Load: got error %v, want refused %v", err, tc.wantRefused)
			}
			if !tc.wantRefused {
				return
			}
			if !strings.Contains(err.Error(), "ADMIN_ADDR") || !strings.Contains(err.Error(), "ADMIN_TOKEN") {
				t.Errorf("error: got %q, want it to name ADMIN_ADDR and ADMIN_TOKEN", err)
			}
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if code := run(ctx, append(env, "SQLITE_PATH="+t.TempDir()+"/x.db"), &out); code != 2 {
				t.Errorf("run: got exit code %d, want 2", code)
			}
			if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "ADMIN_ADDR") {
				t.Errorf("run output: got %q, want one line naming ADMIN_ADDR", out.String())
			}
		})
	}
}

// TestNoSecretLeaks configures every secret, makes the CRM refuse the
// password and the Graph API fail, exercises every listener, and greps
// the config dump, the logs and every answer for each secret.
func TestNoSecretLeaks(t *testing.T) {
	crm := mysqltest.New(t)
	user := fmt.Sprintf("igm_sec_%d", time.Now().UnixNano()%1_000_000_000)
	crm.CreateUser(t, user, "the-real-crm-password-Q7")
	graph := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"message":"Invalid OAuth access token"}}`, http.StatusBadRequest)
	}))
	t.Cleanup(graph.Close)

	cfg := testConfig(t)
	withCRM(&cfg, crm)
	cfg.CRMUser, cfg.CRMPassword = user, "wrong-crm-password-Z3"
	cfg.InstagramAccessToken = "graph-access-token-K9"
	cfg.InstagramGraphURL = graph.URL
	cfg.MirrorReconcileInterval = 50 * time.Millisecond
	secrets := cfg.Secrets()
	if len(secrets) != 5 {
		t.Fatalf("configured secrets: got %d, want 5", len(secrets))
	}

	// The config dump, in both log formats.
	for _, h := range []func(io.Writer) slog.Handler{
		func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
	} {
		var dump bytes.Buffer
		slog.New(h(&dump)).Info("config", "config", cfg)
		noSecretsIn(t, "config dump", dump.String(), secrets...)
		if got := strings.Count(dump.String(), "***"); got != 5 {
			t.Errorf("config dump: got %d masked values, want 5:\n%s", got, dump.String())
		}
	}

	ta := startApp(t, cfg)
	var answers strings.Builder
	keep := func(code int, body string) { fmt.Fprintf(&answers, "%d %s\n", code, body) }
	keep(ta.post([]byte(`{"object":"instagram","entry":[{"messaging":[{"sender":{"id":"c1"},"recipient":{"id":"b1"},"timestamp":1763770000000,"message":{"mid":"mid.sec.1","text":"hello"}}]}]}`)))
	keep(ta.postWithSig([]byte(`{}`), "sha256="+strings.Repeat("1", 64)))
	keep(ta.get(ta.base + "/webhooks/instagram?hub.mode=subscribe&hub.challenge=c&hub.verify_token=" + url.QueryEscape(testVerifyToken)))
	keep(ta.get(ta.base + "/webhooks/instagram?hub.mode=subscribe&hub.challenge=c&hub.verify_token=wrong"))
	keep(ta.adminDo(http.MethodGet, "/admin/messages", "wrong-token", nil))
	keep(ta.adminDo(http.MethodGet, "/admin/messages", testAdminToken, nil))

	eventually(t, 10*time.Second, "the CRM refusal to be recorded", func() bool {
		m, err := ta.store.GetByMID(context.Background(), "mid.sec.1")
		return err == nil && strings.Contains(m.MirrorLastError, "1045")
	})
	keep(ta.get(ta.base + "/readyz"))
	keep(ta.get(ta.base + "/metrics"))
	keep(ta.adminDo(http.MethodGet, "/admin/mirror/stats", testAdminToken, nil))
	keep(ta.adminDo(http.MethodGet, "/admin/messages/1", testAdminToken, nil))
	ta.stop()

	logs := ta.logs.String()
	noSecretsIn(t, "logs", logs, secrets...)
	noSecretsIn(t, "answers", answers.String(), secrets...)
	// The password also never shows in the forms a DSN would give it.
	noSecretsIn(t, "logs", logs, url.QueryEscape(cfg.CRMPassword), user+":"+cfg.CRMPassword)

	var start map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "starting igmirror" {
			start, _ = line["config"].(map[string]any)
		}
	}
	if start == nil {
		t.Fatal("no start-up config dump in the logs")
	}
	for _, name := range []string{"ADMIN_TOKEN", "INSTAGRAM_APP_SECRET", "INSTAGRAM_VERIFY_TOKEN", "INSTAGRAM_ACCESS_TOKEN", "CRM_MYSQL_PASSWORD"} {
		if got := start[name]; got != "***" {
			t.Errorf("start-up dump %s: got %v, want ***", name, got)
		}
	}
	if got := start["CRM_MYSQL_USER"]; got != user {
		t.Errorf("start-up dump CRM_MYSQL_USER: got %v, want %s (not a secret)", got, user)
	}
	if !strings.Contains(logs, "1045") {
		t.Errorf("logs: want the CRM refusal (1045) reported")
	}
}
