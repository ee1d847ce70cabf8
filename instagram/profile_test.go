package instagram_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"igmirror/instagram"
)

const testToken = "IGQVJtest+SECRET/token=="

// fakeGraph is a Graph API stand-in that counts the requests it serves.
type fakeGraph struct {
	*httptest.Server
	calls atomic.Int64
}

func newFakeGraph(t *testing.T, handler http.HandlerFunc) *fakeGraph {
	t.Helper()
	g := &fakeGraph{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.calls.Add(1)
		handler(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

// graphReply answers every request with status and body.
func graphReply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

const consentRequired = `{"error":{"message":"(#230) User consent is required to access user profile","type":"OAuthException","code":230,"fbtrace_id":"Abc"}}`

// testClock is a settable clock safe for use from the client's goroutines.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newProfileClient(t *testing.T, cfg instagram.ProfileConfig) (*instagram.ProfileClient, *testClock) {
	t.Helper()
	c := instagram.NewProfileClient(cfg)
	clock := &testClock{now: time.Date(2025, 11, 22, 0, 0, 0, 0, time.UTC)}
	c.SetClock(clock.Now)
	return c, clock
}

func assertLookup(t *testing.T, c *instagram.ProfileClient, userID, wantName string, wantOutcome instagram.LookupOutcome) {
	t.Helper()
	name, outcome := c.Username(context.Background(), userID)
	if name != wantName || outcome != wantOutcome {
		t.Errorf("Username(%q): got (%q, %s), want (%q, %s)", userID, name, outcome, wantName, wantOutcome)
	}
}

func assertCalls(t *testing.T, g *fakeGraph, want int64) {
	t.Helper()
	if got := g.calls.Load(); got != want {
		t.Errorf("graph calls: got %d, want %d", got, want)
	}
}

func TestUsernameRequest(t *testing.T) {
	tests := []struct {
		name     string
		basePath string
		userID   string
		wantPath string
	}{
		{name: "plain id", basePath: "/v21.0", userID: "5582201937461123", wantPath: "/v21.0/5582201937461123"},
		{name: "trailing slash on base", basePath: "/v21.0/", userID: "5582201937461123", wantPath: "/v21.0/5582201937461123"},
		{name: "id with reserved characters", basePath: "/v21.0", userID: "a/b?c#d e", wantPath: "/v21.0/a%2Fb%3Fc%23d%20e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotPath string
			var gotQuery url.Values
			g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
				gotPath, gotQuery = r.URL.EscapedPath(), r.URL.Query()
				graphReply(http.StatusOK, `{"username":"shop_fan_42","id":"1"}`)(w, r)
			})
			c, _ := newProfileClient(t, instagram.ProfileConfig{BaseURL: g.URL + tt.basePath, AccessToken: testToken})
			assertLookup(t, c, tt.userID, "shop_fan_42", instagram.LookupMiss)
			if gotPath != tt.wantPath {
				t.Errorf("path: got %q, want %q", gotPath, tt.wantPath)
			}
			if got, want := gotQuery.Get("fields"), "username"; got != want {
				t.Errorf("fields: got %q, want %q", got, want)
			}
			if got, want := gotQuery.Get("access_token"), testToken; got != want {
				t.Errorf("access_token: got %q, want %q", got, want)
			}
		})
	}
}

func TestUsernameCaching(t *testing.T) {
	const ttl, negTTL = time.Hour, 10 * time.Minute
	tests := []struct {
		name       string
		reply      http.HandlerFunc
		wantName   string // "" means the user id
		wantFirst  instagram.LookupOutcome
		wantSecond instagram.LookupOutcome
		cachedFor  time.Duration // 0: the second call reaches the server
	}{
		{name: "success then hit", reply: graphReply(200, `{"username":"shop_fan_42","id":"42"}`),
			wantName: "shop_fan_42", wantFirst: instagram.LookupMiss, wantSecond: instagram.LookupHit, cachedFor: ttl},
		{name: "consent required", reply: graphReply(400, consentRequired),
			wantFirst: instagram.LookupFallback, wantSecond: instagram.LookupFallback, cachedFor: negTTL},
		{name: "not found status", reply: graphReply(404, `{"error":{"message":"nope","type":"GraphMethodException","code":803}}`),
			wantFirst: instagram.LookupFallback, wantSecond: instagram.LookupFallback, cachedFor: negTTL},
		{name: "no such object", reply: graphReply(400, `{"error":{"message":"Unsupported get request.","type":"GraphMethodException","code":100,"error_subcode":33}}`),
			wantFirst: instagram.LookupFallback, wantSecond: instagram.LookupFallback, cachedFor: negTTL},
		{name: "empty username", reply: graphReply(200, `{"username":"","id":"42"}`),
			wantFirst: instagram.LookupFallback, wantSecond: instagram.LookupFallback, cachedFor: negTTL},
		{name: "unusable username", reply: graphReply(200, `{"username":"two words","id":"42"}`),
			wantFirst: instagram.LookupFallback, wantSecond: instagram.LookupFallback, cachedFor: negTTL},
		{name: "server error", reply: graphReply(500, `{"error":{"message":"An unknown error occurred","type":"OAuthException","code":1}}`),
			wantFirst: instagram.LookupFallback, wantSecond: instagram.LookupFallback, cachedFor: 30 * time.Second},
		{name: "expired token", reply: graphReply(400, `{"error":{"message":"Error validating access token","type":"OAuthException","code":190}}`),
			wantFirst: instagram.LookupFallback, wantSecond: instagram.LookupFallback, cachedFor: 30 * time.Second},
		{name: "not json", reply: graphReply(200, `<html>`),
			wantFirst: instagram.LookupFallback, wantSecond: instagram.LookupFallback, cachedFor: 30 * time.Second},
		{name: "body over 64 KiB", reply: graphReply(200, `{"username":"shop_fan_42","pad":"`+strings.Repeat("x", 70<<10)+`"}`),
			wantFirst: instagram.LookupFallback, wantSecond: instagram.LookupFallback, cachedFor: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const userID = "5582201937461123"
			wantName := tt.wantName
			if wantName == "" {
				wantName = userID
			}
			g := newFakeGraph(t, tt.reply)
			c, clock := newProfileClient(t, instagram.ProfileConfig{BaseURL: g.URL, AccessToken: testToken, TTL: ttl, NegativeTTL: negTTL})

			assertLookup(t, c, userID, wantName, tt.wantFirst)
			assertCalls(t, g, 1)
			clock.Advance(tt.cachedFor - time.Second)
			assertLookup(t, c, userID, wantName, tt.wantSecond)
			assertCalls(t, g, 1)
			clock.Advance(2 * time.Second)
			assertLookup(t, c, userID, wantName, tt.wantFirst)
			assertCalls(t, g, 2)
		})
	}
}

// TestUsernameTimeout: a Graph API that never answers costs a look-up its
// Timeout, then the id. The server hangs until the request is abandoned
// and the caller's context has no deadline, so only the client's own
// Timeout can end the look-up: were it ignored, the test would hang until
// go test's -timeout, not pass. The failure is remembered like any Graph
// failure, so the next look-up does not wait again.
func TestUsernameTimeout(t *testing.T) {
	g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	c, clock := newProfileClient(t, instagram.ProfileConfig{BaseURL: g.URL, AccessToken: testToken, Timeout: 50 * time.Millisecond})
	assertLookup(t, c, "42", "42", instagram.LookupFallback)
	// Not a count of 1: on a loaded machine the Timeout may end the
	// request before the server has read it.
	calls := g.calls.Load()
	assertLookup(t, c, "42", "42", instagram.LookupFallback)
	assertCalls(t, g, calls)
	clock.Advance(31 * time.Second) // past errorTTL: asked again
	assertLookup(t, c, "42", "42", instagram.LookupFallback)
	if got := g.calls.Load(); got > calls+1 {
		t.Errorf("graph calls after errorTTL: got %d, want at most %d", got, calls+1)
	}
}

// TestUsernameCallerCancelMidRequest: a caller that gives up while the
// Graph API is still thinking gets the id at once, and, since that says
// nothing about the Graph API, nothing is cached. The Timeout is an hour,
// so only the cancel, made once the server holds the request, can end it.
func TestUsernameCallerCancelMidRequest(t *testing.T) {
	arrived := make(chan struct{}, 1)
	var hang atomic.Bool
	hang.Store(true)
	g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			arrived <- struct{}{}
			<-r.Context().Done()
			return
		}
		graphReply(200, `{"username":"shop_fan_42"}`)(w, r)
	})
	c, _ := newProfileClient(t, instagram.ProfileConfig{BaseURL: g.URL, AccessToken: testToken, Timeout: time.Hour})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type answer struct {
		name    string
		outcome instagram.LookupOutcome
	}
	done := make(chan answer, 1)
	go func() {
		name, outcome := c.Username(ctx, "42")
		done <- answer{name, outcome}
	}()
	<-arrived
	cancel()
	if got := <-done; got.name != "42" || got.outcome != instagram.LookupFallback {
		t.Errorf("cancelled mid-request: got (%q, %s), want (\"42\", fallback)", got.name, got.outcome)
	}
	hang.Store(false)
	assertLookup(t, c, "42", "shop_fan_42", instagram.LookupMiss)
	assertCalls(t, g, 2)
}

func TestUsernameCallerCancelIsNotCached(t *testing.T) {
	g := newFakeGraph(t, graphReply(200, `{"username":"shop_fan_42"}`))
	c, _ := newProfileClient(t, instagram.ProfileConfig{BaseURL: g.URL, AccessToken: testToken})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if name, outcome := c.Username(ctx, "42"); name != "42" || outcome != instagram.LookupFallback {
		t.Errorf("cancelled: got (%q, %s), want (\"42\", fallback)", name, outcome)
	}
	assertLookup(t, c, "42", "shop_fan_42", instagram.LookupMiss)
	assertCalls(t, g, 1)
}

func TestUsernameNoCall(t *testing.T) {
	g := newFakeGraph(t, graphReply(200, `{"username":"shop_fan_42"}`))
	tests := []struct {
		name   string
		cfg    instagram.ProfileConfig
		userID string
	}{
		{name: "no token", cfg: instagram.ProfileConfig{BaseURL: g.URL}, userID: "42"},
		{name: "base url not absolute", cfg: instagram.ProfileConfig{BaseURL: "graph.instagram.com/v21.0", AccessToken: testToken}, userID: "42"},
		{name: "base url not http", cfg: instagram.ProfileConfig{BaseURL: "ftp://graph.example/v21.0", AccessToken: testToken}, userID: "42"},
		{name: "empty user id", cfg: instagram.ProfileConfig{BaseURL: g.URL, AccessToken: testToken}, userID: ""},
		{name: "dot-dot user id", cfg: instagram.ProfileConfig{BaseURL: g.URL, AccessToken: testToken}, userID: ".."},
		{name: "overlong user id", cfg: instagram.ProfileConfig{BaseURL: g.URL, AccessToken: testToken}, userID: strings.Repeat("9", 101)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newProfileClient(t, tt.cfg)
			assertLookup(t, c, tt.userID, tt.userID, instagram.LookupFallback)
			assertCalls(t, g, 0)
		})
	}
}

func TestUsernameCacheIsBounded(t *testing.T) {
	g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/")
		graphReply(200, `{"username":"user_`+id+`"}`)(w, r)
	})
	const bound = 5
	c, clock := newProfileClient(t, instagram.ProfileConfig{BaseURL: g.URL, AccessToken: testToken, MaxEntries: bound})
	for i := range 200 {
		id := fmt.Sprint(i)
		assertLookup(t, c, id, "user_"+id, instagram.LookupMiss)
		assertLookup(t, c, id, "user_"+id, instagram.LookupHit)
		if got := c.CacheLen(); got > bound {
			t.Fatalf("after %d users: cache holds %d, want at most %d", i+1, got, bound)
		}
		if i%50 == 0 {
			clock.Advance(25 * time.Hour) // lets eviction find expired entries too
		}
	}
	if got, want := c.CacheLen(), bound; got != want {
		t.Errorf("cache holds %d, want %d", got, want)
	}
}

func TestUsernameConcurrent(t *testing.T) {
	g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/")
		graphReply(200, `{"username":"user_`+id+`"}`)(w, r)
	})
	// An hour, not the 2s default: 400 look-ups at once on a loaded
	// machine can take longer than that, and a timeout is not under test.
	c, _ := newProfileClient(t, instagram.ProfileConfig{BaseURL: g.URL, AccessToken: testToken, MaxEntries: 3, Timeout: time.Hour})
	var wg sync.WaitGroup
	errs := make(chan string, 400)
	for i := range 400 {
		wg.Go(func() {
			id := fmt.Sprint(i % 7)
			if name, _ := c.Username(context.Background(), id); name != "user_"+id {
				errs <- fmt.Sprintf("user %s: got %q, want %q", id, name, "user_"+id)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := c.CacheLen(); got > 3 {
		t.Errorf("cache holds %d, want at most 3", got)
	}
}

func TestUsernameLogsNeverShowToken(t *testing.T) {
	echoToken := func(w http.ResponseWriter, r *http.Request) {
		tok := r.URL.Query().Get("access_token")
		graphReply(400, `{"error":{"message":"Invalid OAuth access token - Cannot parse access token `+tok+` (`+url.QueryEscape(tok)+`)","type":"OAuthException","code":190}}`)(w, r)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name    string
		baseURL func(t *testing.T) string
		timeout time.Duration
	}{
		{name: "graph error echoes the token", baseURL: func(t *testing.T) string { return newFakeGraph(t, echoToken).URL }},
		{name: "server error", baseURL: func(t *testing.T) string { return newFakeGraph(t, graphReply(500, `oops`)).URL }},
		{name: "connection refused", baseURL: func(*testing.T) string { return closedURL }},
		{name: "timeout", timeout: 20 * time.Millisecond, baseURL: func(t *testing.T) string {
			return newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }).URL
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			c, _ := newProfileClient(t, instagram.ProfileConfig{
				BaseURL: tt.baseURL(t), AccessToken: testToken, Timeout: tt.timeout, Logger: logger,
			})
			assertLookup(t, c, "42", "42", instagram.LookupFallback)
			logs := buf.String()
			if !strings.Contains(logs, "user_id=42") {
				t.Fatalf("the failure was not logged with its user id: %q", logs)
			}
			for _, form := range []string{testToken, url.QueryEscape(testToken), "SECRET"} {
				if strings.Contains(logs, form) {
					t.Errorf("log shows the access token (%q): %s", form, logs)
				}
			}
		})
	}
}
