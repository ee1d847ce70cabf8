package instagram_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"igmirror/instagram"
	"igmirror/internal/testkit/check"
)

// subscribedAnswer is what GET /me/subscribed_apps says for an app that
// gets messages and two other fields.
const subscribedAnswer = `{"data":[{"subscribed_fields":["messages","comments","messaging_seen"],"name":"igmirror","id":"1234567890"}]}`

// switchableGraph serves GET /v21.0/me/subscribed_apps with whatever
// answer the test last set, and refuses any other request or token.
type switchableGraph struct {
	*fakeGraph
	mu     sync.Mutex
	status int
	body   string
}

func newSwitchableGraph(t *testing.T) *switchableGraph {
	t.Helper()
	g := &switchableGraph{status: http.StatusOK, body: subscribedAnswer}
	g.fakeGraph = newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v21.0/me/subscribed_apps" || r.URL.Query().Get("access_token") != testToken {
			t.Errorf("unexpected request %s %s (token right: %v)", r.Method, r.URL.Path, r.URL.Query().Get("access_token") == testToken)
			graphReply(http.StatusBadRequest, `{"error":{"message":"bad request","code":100}}`)(w, r)
			return
		}
		g.mu.Lock()
		status, body := g.status, g.body
		g.mu.Unlock()
		graphReply(status, body)(w, r)
	})
	return g
}

func (g *switchableGraph) answer(status int, body string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.status, g.body = status, body
}

// TestSubscriptionTransitions walks subscribed → not subscribed → error →
// subscribed and checks the status, one log line per change of state and
// none for a check that finds the same state, and the token nowhere.
func TestSubscriptionTransitions(t *testing.T) {
	g := newSwitchableGraph(t)
	logs := &check.LogBuffer{}
	w := instagram.NewSubscriptionWatcher(instagram.SubscriptionConfig{
		BaseURL: g.URL + "/v21.0/", AccessToken: testToken, Logger: logs.Logger(),
	})
	if !w.Enabled() {
		t.Fatal("Enabled with a token: got false")
	}
	if st := w.Status(); st.State != instagram.SubscriptionUnknown || !st.LastCheck.IsZero() {
		t.Fatalf("before any check: got %+v, want unknown and never checked", st)
	}
	const changed = `"msg":"instagram webhook subscription state changed"`
	steps := []struct {
		name       string
		status     int
		body       string
		want       instagram.SubscriptionState
		wantFields []string
		wantLogs   int // state-change lines so far
	}{
		{"subscribed", http.StatusOK, subscribedAnswer, instagram.SubscriptionSubscribed,
			[]string{"comments", "messages", "messaging_seen"}, 1},
		{"still subscribed", http.StatusOK, subscribedAnswer, instagram.SubscriptionSubscribed,
			[]string{"comments", "messages", "messaging_seen"}, 1},
		{"unsubscribed: empty data", http.StatusOK, `{"data":[]}`, instagram.SubscriptionNotSubscribed, nil, 2},
		{"subscribed without messages", http.StatusOK, `{"data":[{"subscribed_fields":["comments"]}]}`,
			instagram.SubscriptionNotSubscribed, []string{"comments"}, 2},
		// The Graph API may quote the request, token included, in its message.
		{"token expired", http.StatusBadRequest,
			`{"error":{"message":"Error validating access token for ` + testToken + `: Session has expired","type":"OAuthException","code":190,"error_subcode":463}}`,
			instagram.SubscriptionError, []string{"comments"}, 3},
		{"server error", http.StatusInternalServerError, `oops`, instagram.SubscriptionError, []string{"comments"}, 3},
		{"200 that is not a list", http.StatusOK, `{"success":true}`, instagram.SubscriptionError, []string{"comments"}, 3},
		{"subscribed again", http.StatusOK, subscribedAnswer, instagram.SubscriptionSubscribed,
			[]string{"comments", "messages", "messaging_seen"}, 4},
	}
	prev := w.Status()
	for _, s := range steps {
		g.answer(s.status, s.body)
		got := w.Check(context.Background())
		if got.State != s.want {
			t.Fatalf("%s: state %s (error %q), want %s", s.name, got.State, got.Error, s.want)
		}
		if !slices.Equal(got.Fields, s.wantFields) {
			t.Errorf("%s: fields %q, want %q", s.name, got.Fields, s.wantFields)
		}
		if (got.State == instagram.SubscriptionError) != (got.Error != "") {
			t.Errorf("%s: state %s with error %q: want an error exactly in the error state", s.name, got.State, got.Error)
		}
		if got.LastCheck.IsZero() {
			t.Errorf("%s: LastCheck is zero after a check", s.name)
		}
		if got.State == prev.State && !got.Since.Equal(prev.Since) {
			t.Errorf("%s: Since moved from %v to %v without a change of state", s.name, prev.Since, got.Since)
		}
		if n := logs.Count(changed); n != s.wantLogs {
			t.Errorf("%s: %d state-change log lines so far, want %d", s.name, n, s.wantLogs)
		}
		if strings.Contains(got.Error, testToken) || strings.Contains(got.Error, url.QueryEscape(testToken)) {
			t.Errorf("%s: status error %q holds the token", s.name, got.Error)
		}
		prev = got
	}
	if st := w.Status(); st.State != instagram.SubscriptionSubscribed {
		t.Errorf("Status after the walk: %s, want subscribed", st.State)
	}
	assertCalls(t, g.fakeGraph, int64(len(steps)))

	lines := logs.Lines()
	var transitions []string
	for _, l := range lines {
		if strings.Contains(l, changed) {
			transitions = append(transitions, l)
		}
	}
	wantTo := []string{`"to":"subscribed"`, `"to":"not_subscribed"`, `"to":"error"`, `"to":"subscribed"`}
	for i, want := range wantTo {
		if i >= len(transitions) || !strings.Contains(transitions[i], want) {
			t.Errorf("state-change line %d: want one with %s, got %q", i, want, transitions)
			break
		}
	}
	if len(transitions) > 2 && !strings.Contains(transitions[2], `"error":"graph api answered 400: code 190 subcode 463 (OAuthException)`) {
		t.Errorf("error line %q: want the Graph API's code in it", transitions[2])
	}
	if len(transitions) > 1 && !strings.Contains(transitions[1], `"level":"ERROR"`) {
		t.Errorf("lost subscription line %q: want level ERROR", transitions[1])
	}
	all := logs.String()
	for _, secret := range []string{testToken, url.QueryEscape(testToken), "access_token"} {
		if strings.Contains(all, secret) {
			t.Errorf("logs contain %q:\n%s", secret, all)
		}
	}
}

// TestSubscriptionUnreachable checks a transport failure: the error state,
// with an error that names neither the URL nor the token.
func TestSubscriptionUnreachable(t *testing.T) {
	g := newSwitchableGraph(t)
	base := g.URL
	g.Close()
	logs := &check.LogBuffer{}
	w := instagram.NewSubscriptionWatcher(instagram.SubscriptionConfig{
		BaseURL: base, AccessToken: testToken, Logger: logs.Logger(),
	})
	st := w.Check(context.Background())
	if st.State != instagram.SubscriptionError || st.Error == "" {
		t.Fatalf("graph api down: got %s %q, want error with a reason", st.State, st.Error)
	}
	for _, where := range []string{st.Error, logs.String()} {
		for _, bad := range []string{testToken, url.QueryEscape(testToken), "access_token", "subscribed_apps"} {
			if strings.Contains(where, bad) {
				t.Errorf("%q contains %q", where, bad)
			}
		}
	}
	if n := logs.Count(`"to":"error"`); n != 1 {
		t.Errorf("state-change lines to error: got %d, want 1", n)
	}
}

// TestSubscriptionWithoutToken checks that no token means no call and the
// unknown state, whatever Check and Run are asked.
func TestSubscriptionWithoutToken(t *testing.T) {
	g := newSwitchableGraph(t)
	w := instagram.NewSubscriptionWatcher(instagram.SubscriptionConfig{BaseURL: g.URL + "/v21.0"})
	if w.Enabled() {
		t.Error("Enabled without a token: got true")
	}
	if st := w.Check(context.Background()); st.State != instagram.SubscriptionUnknown {
		t.Errorf("Check without a token: got %s, want unknown", st.State)
	}
	// Run returns at once when disabled; a hang here fails the test by timeout.
	w.Run(context.Background(), time.Nanosecond)
	assertCalls(t, g.fakeGraph, 0)
}

// TestSubscriptionCancelledCheckChangesNothing checks that a check cut
// short by its caller (shutdown) is not taken for a Graph API failure.
func TestSubscriptionCancelledCheckChangesNothing(t *testing.T) {
	g := newSwitchableGraph(t)
	w := instagram.NewSubscriptionWatcher(instagram.SubscriptionConfig{BaseURL: g.URL + "/v21.0", AccessToken: testToken})
	if st := w.Check(context.Background()); st.State != instagram.SubscriptionSubscribed {
		t.Fatalf("first check: got %s, want subscribed", st.State)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if st := w.Check(ctx); st.State != instagram.SubscriptionSubscribed {
		t.Errorf("cancelled check: got %s (%q), want subscribed kept", st.State, st.Error)
	}
}

// TestSubscriptionRunStopsWithContext checks that Run checks at once and
// returns when its context ends.
func TestSubscriptionRunStopsWithContext(t *testing.T) {
	g := newSwitchableGraph(t)
	w := instagram.NewSubscriptionWatcher(instagram.SubscriptionConfig{BaseURL: g.URL + "/v21.0", AccessToken: testToken})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, 1<<62) }()
	check.Eventually(t, 10*time.Second, "the first check", func() bool { return w.Status().State == instagram.SubscriptionSubscribed })
	cancel()
	<-done
	assertCalls(t, g.fakeGraph, 1)
}
