package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"igmirror/config"
	"igmirror/domain"
	"igmirror/instagram"
	"igmirror/internal/testkit/check"
	"igmirror/internal/testkit/mysqltest"
)

// Secrets used by the harness; tests grep logs for them.
const (
	testAppSecret   = "test-app-secret-5f1e"
	testAdminToken  = "test-admin-token-9c2d"
	testVerifyToken = "test-verify-token-77aa"
	testInstanceID  = "igmirror-test-1"
)

// testApp is the whole service started in-process on loopback port 0.
type testApp struct {
	*App
	t      *testing.T
	base   string // public listener URL
	admin  string // admin listener URL
	logs   *syncBuffer
	client *http.Client
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = check.LogBuffer

// testConfig is a config for one test: SQLite in a temp dir, loopback
// listeners on free ports, secrets set, mirror off.
func testConfig(t testing.TB) config.Config {
	t.Helper()
	cfg, err := config.Load([]string{
		"HTTP_ADDR=127.0.0.1:0",
		"ADMIN_ADDR=127.0.0.1:0",
		"ADMIN_TOKEN=" + testAdminToken,
		"SQLITE_PATH=" + filepath.Join(t.TempDir(), "test.db"),
		"INSTAGRAM_APP_SECRET=" + testAppSecret,
		"INSTAGRAM_VERIFY_TOKEN=" + testVerifyToken,
		"MIRROR_DRAIN_TIMEOUT=5s",
		"MIRROR_RECONCILE_INTERVAL=0",
		// Off, so that a test's fake Graph API sees only the look-ups it
		// expects; the subscription tests turn it on.
		"SUBSCRIPTION_CHECK_INTERVAL=0",
		"LOG_LEVEL=debug",
		"INSTANCE_ID=" + testInstanceID,
	})
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	return cfg
}

// withCRM points cfg's mirror at a throwaway CRM database.
func withCRM(cfg *config.Config, crm *mysqltest.DB) {
	cfg.CRMEnabled = true
	cfg.CRMHost = crm.Host
	cfg.CRMPort = crm.Port
	cfg.CRMUser = crm.User
	cfg.CRMPassword = crm.Password
	cfg.CRMDatabase = crm.Name
	cfg.CRMTable = crm.Table
	cfg.CRMTLS = "false"
}

// startApp starts the service with cfg and stops it when the test ends.
func startApp(t *testing.T, cfg config.Config) *testApp {
	t.Helper()
	return startAppWith(t, cfg, nil)
}

// startAppWith is startApp, letting tweak (when not nil) change the App
// between New and Start.
func startAppWith(t *testing.T, cfg config.Config, tweak func(*App)) *testApp {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(logs, testLogWriter()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if tweak != nil {
		tweak(a)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ta := &testApp{
		App: a, t: t, logs: logs,
		base:   "http://" + a.PublicAddr(),
		admin:  "http://" + a.AdminAddr(),
		client: &http.Client{Timeout: 30 * time.Second},
	}
	t.Cleanup(func() { ta.stop() })
	return ta
}

// testLogWriter shows the service's logs with -v when IGMIRROR_TEST_LOGS=1.
func testLogWriter() io.Writer {
	if os.Getenv("IGMIRROR_TEST_LOGS") == "1" {
		return os.Stderr
	}
	return io.Discard
}

func (ta *testApp) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ta.Shutdown(ctx); err != nil {
		ta.t.Errorf("shutdown: %v", err)
	}
}

// sample reads one of the sample deliveries in testdata/webhooks.
func sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "webhooks", name))
	if err != nil {
		t.Fatalf("read sample: %v", err)
	}
	return b
}

// post sends a signed webhook delivery and returns the status and body.
func (ta *testApp) post(body []byte) (int, string) {
	ta.t.Helper()
	return ta.postWithSig(body, instagram.Sign([]byte(testAppSecret), body))
}

// postWithSig sends body with the given X-Hub-Signature-256 ("" = none).
func (ta *testApp) postWithSig(body []byte, sig string) (int, string) {
	ta.t.Helper()
	req, err := http.NewRequest(http.MethodPost, ta.base+"/webhooks/instagram", bytes.NewReader(body))
	if err != nil {
		ta.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	return ta.do(req)
}

// adminDo calls the admin API with the harness token (token "" = none).
func (ta *testApp) adminDo(method, path, token string, body any) (int, string) {
	ta.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			ta.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, ta.admin+path, rd)
	if err != nil {
		ta.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return ta.do(req)
}

func (ta *testApp) get(url string) (int, string) {
	ta.t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		ta.t.Fatal(err)
	}
	return ta.do(req)
}

func (ta *testApp) do(req *http.Request) (int, string) {
	ta.t.Helper()
	resp, err := ta.client.Do(req)
	if err != nil {
		ta.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// messages lists every stored message through the store, oldest first.
func (ta *testApp) messages() []domain.Message {
	ta.t.Helper()
	var all []domain.Message
	cursor := ""
	for {
		page, next, err := ta.store.List(context.Background(), domain.ListFilter{Limit: 500, Cursor: cursor})
		if err != nil {
			ta.t.Fatalf("list: %v", err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
		all[i], all[j] = all[j], all[i]
	}
	return all
}

// eventually polls cond until it holds or the deadline passes.
var eventually = check.Eventually

// noSecretsIn fails the test if any configured secret appears in s.
func noSecretsIn(t testing.TB, what, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("%s contains a secret (%q...)", what, sec[:min(4, len(sec))])
		}
	}
}
