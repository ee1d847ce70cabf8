package instagram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"igmirror/domain"
)

// SubscriptionState is what the last check of the app's webhook
// subscription found.
type SubscriptionState string

// The states of a SubscriptionWatcher. Meta unsubscribes an app whose
// endpoint has failed for a while, and then no delivery ever comes: the
// service sees silence, not an error, so only asking the Graph API tells.
const (
	SubscriptionUnknown       SubscriptionState = "unknown"        // no access token, or not checked yet
	SubscriptionSubscribed    SubscriptionState = "subscribed"     // the app gets the messages field
	SubscriptionNotSubscribed SubscriptionState = "not_subscribed" // no subscription, or one without messages
	SubscriptionError         SubscriptionState = "error"          // the check itself failed
)

// SubscriptionStates lists every state, for metrics that pre-create one
// series per state.
var SubscriptionStates = []SubscriptionState{SubscriptionUnknown, SubscriptionSubscribed, SubscriptionNotSubscribed, SubscriptionError}

// subscriptionField is the webhook field the service lives on.
const subscriptionField = "messages"

// Limits of one subscription check.
const (
	defaultSubscriptionTimeout = 10 * time.Second
	maxSubscriptionBody        = 64 << 10 // a handful of apps with their field lists
)

// SubscriptionConfig configures a SubscriptionWatcher.
type SubscriptionConfig struct {
	BaseURL     string        // INSTAGRAM_GRAPH_URL; empty = DefaultGraphURL
	AccessToken string        // empty: never check, the state stays unknown
	Timeout     time.Duration // per check; default 10s
	HTTPClient  *http.Client  // optional
	Logger      *slog.Logger  // optional; never gets the token
}

// SubscriptionStatus is the watcher's view, as /readyz and the admin API
// show it. It never holds the token.
type SubscriptionStatus struct {
	State SubscriptionState `json:"state"`
	// Fields are the webhook fields the subscription covers, as the last
	// successful check found them.
	Fields []string `json:"subscribed_fields,omitempty"`
	// Since is when the state last changed (the watcher's creation at first).
	Since time.Time `json:"since"`
	// LastCheck is when the last check ended; zero before the first.
	LastCheck time.Time `json:"last_check,omitzero"`
	// Error is why the last check failed, in the error state only.
	Error string `json:"error,omitempty"`
}

// SubscriptionWatcher checks, through the Graph API's
// GET /me/subscribed_apps, that the app is subscribed to the Instagram
// account's messages webhook, and logs one line each time that changes.
// It is safe for concurrent use.
type SubscriptionWatcher struct {
	url     string // with the token in its query: never logged
	token   string
	timeout time.Duration
	client  *http.Client
	log     *slog.Logger
	now     func() time.Time

	checkMu sync.Mutex // one check at a time, so state changes log in order
	mu      sync.Mutex
	status  SubscriptionStatus
}

// NewSubscriptionWatcher returns a watcher for cfg. Without a token, or
// with a base URL that is not an absolute http(s) URL (logged), it never
// calls the Graph API and reports SubscriptionUnknown.
func NewSubscriptionWatcher(cfg SubscriptionConfig) *SubscriptionWatcher {
	w := &SubscriptionWatcher{
		token:   cfg.AccessToken,
		timeout: orDefault(cfg.Timeout, defaultSubscriptionTimeout),
		client:  cfg.HTTPClient,
		log:     cfg.Logger,
		now:     time.Now,
	}
	if w.client == nil {
		w.client = &http.Client{}
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.status = SubscriptionStatus{State: SubscriptionUnknown, Since: w.now().UTC()}
	if w.token == "" {
		return w
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultGraphURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		w.log.Error("instagram graph url is not an absolute http(s) url; the webhook subscription is not checked")
		return w
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/me/subscribed_apps"
	u.RawPath = ""
	q := u.Query()
	q.Set("access_token", w.token)
	u.RawQuery = q.Encode()
	w.url = u.String()
	return w
}

// Enabled reports whether the watcher calls the Graph API at all.
func (w *SubscriptionWatcher) Enabled() bool { return w.url != "" }

// Status returns the state the last check left.
func (w *SubscriptionWatcher) Status() SubscriptionStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.status
	st.Fields = slices.Clone(st.Fields)
	return st
}

// Run checks at once, then every interval, until ctx ends. It returns at
// once when the watcher is not enabled or interval is not positive.
func (w *SubscriptionWatcher) Run(ctx context.Context, interval time.Duration) {
	if !w.Enabled() || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check asks the Graph API now, records the answer and returns the new
// status. A change of state is logged once: an error at Warn, a lost
// subscription at Error, anything else at Info. A check cut short by ctx
// (shutdown) changes nothing.
func (w *SubscriptionWatcher) Check(ctx context.Context) SubscriptionStatus {
	if !w.Enabled() {
		return w.Status()
	}
	w.checkMu.Lock()
	defer w.checkMu.Unlock()
	state, fields, err := w.fetch(ctx)
	if err != nil && ctx.Err() != nil {
		return w.Status()
	}
	now := w.now().UTC()
	w.mu.Lock()
	prev := w.status
	next := SubscriptionStatus{State: state, Since: prev.Since, LastCheck: now, Fields: prev.Fields}
	if err == nil {
		next.Fields = fields
	} else {
		next.Error = err.Error()
	}
	if next.State != prev.State {
		next.Since = now
	}
	w.status = next
	w.mu.Unlock()

	if next.State != prev.State {
		level := slog.LevelInfo
		switch next.State {
		case SubscriptionError:
			level = slog.LevelWarn
		case SubscriptionNotSubscribed:
			level = slog.LevelError
		}
		attrs := []slog.Attr{slog.String("from", string(prev.State)), slog.String("to", string(next.State)),
			slog.Any("subscribed_fields", fields)}
		if err != nil {
			attrs = append(attrs, slog.String("error", next.Error))
		}
		w.log.LogAttrs(ctx, level, "instagram webhook subscription state changed", attrs...)
	}
	return w.Status()
}

// subscribedApps is the answer of GET /me/subscribed_apps: one entry per
// app subscribed to the account's webhooks (this app's token sees its own).
type subscribedApps struct {
	Data *[]struct {
		SubscribedFields []string `json:"subscribed_fields"`
	} `json:"data"`
	Error *graphError `json:"error"`
}

// fetch makes one GET /me/subscribed_apps. Its error text is safe to log:
// no URL, no token.
func (w *SubscriptionWatcher) fetch(ctx context.Context) (SubscriptionState, []string, error) {
	reqCtx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, w.url, nil)
	if err != nil {
		return SubscriptionError, nil, errors.New("request not built")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return SubscriptionError, nil, errors.New(w.redact(transportError(err)))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSubscriptionBody+1))
	if err != nil || len(body) > maxSubscriptionBody {
		return SubscriptionError, nil, fmt.Errorf("answer %d unreadable or too large", resp.StatusCode)
	}
	var a subscribedApps
	jsonErr := json.Unmarshal(body, &a)
	switch {
	case a.Error != nil:
		return SubscriptionError, nil, fmt.Errorf("graph api answered %d: code %d subcode %d (%s) %s", resp.StatusCode,
			a.Error.Code, a.Error.Subcode, a.Error.Type, w.redact(domain.TruncateUTF8(a.Error.Message, 200)))
	case resp.StatusCode != http.StatusOK:
		return SubscriptionError, nil, fmt.Errorf("graph api answered %d", resp.StatusCode)
	case jsonErr != nil || a.Data == nil:
		return SubscriptionError, nil, errors.New("graph api answered 200 without a data list")
	}
	var fields []string
	for _, app := range *a.Data {
		for _, f := range app.SubscribedFields {
			if !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
	}
	slices.Sort(fields)
	if slices.Contains(fields, subscriptionField) {
		return SubscriptionSubscribed, fields, nil
	}
	return SubscriptionNotSubscribed, fields, nil
}

// redact removes the token, raw or query-escaped, from text bound for a
// log or an API answer.
func (w *SubscriptionWatcher) redact(s string) string { return redactToken(w.token, s) }
