package instagram

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"igmirror/domain"
)

// DefaultGraphURL is the Instagram Graph API base a ProfileClient uses when
// ProfileConfig.BaseURL is empty.
const DefaultGraphURL = "https://graph.instagram.com/v21.0"

// LookupOutcome is what one look-up did: "hit" (answered from the cache),
// "miss" (fetched from the Graph API) or "fallback" (the user id was used).
type LookupOutcome string

// The outcomes of ProfileClient.Username.
const (
	LookupHit      LookupOutcome = "hit"
	LookupMiss     LookupOutcome = "miss"
	LookupFallback LookupOutcome = "fallback"
)

// Defaults of ProfileConfig and the fixed limits of a look-up.
const (
	defaultProfileTimeout = 2 * time.Second
	defaultProfileTTL     = 24 * time.Hour
	defaultNegativeTTL    = time.Hour
	defaultMaxEntries     = 10000

	// errorTTL is how long a failed look-up (timeout, 5xx, unexpected
	// answer) is remembered. Without it a Graph outage would add a full
	// Timeout to every message a worker mirrors; 30s keeps that cost to
	// one call per customer per half minute while recovering quickly.
	errorTTL = 30 * time.Second
	// maxProfileBody bounds what is read of a Graph answer; a profile with
	// one field is a few dozen bytes.
	maxProfileBody = 64 << 10
	// maxUsernameLen is the CRM's username column width (VARCHAR(100)).
	maxUsernameLen = 100
	// maxUserIDLen matches the store's limit on ids.
	maxUserIDLen = 100
	// evictSample is how many cache entries an insert into a full cache
	// looks at for an expired one before evicting the first it saw.
	evictSample = 8
)

// ProfileConfig configures a ProfileClient. Zero durations and sizes take
// the documented defaults.
type ProfileConfig struct {
	BaseURL     string        // INSTAGRAM_GRAPH_URL, e.g. https://graph.instagram.com/v21.0; a trailing slash is optional
	AccessToken string        // empty: never call the Graph API, always fall back
	Timeout     time.Duration // per request; default 2s
	TTL         time.Duration // how long a username is cached; default 24h
	NegativeTTL time.Duration // how long "consent required" (code 230) and not-found answers are cached; default 1h
	MaxEntries  int           // cache bound; default 10000
	HTTPClient  *http.Client  // optional
	Logger      *slog.Logger  // optional; gets ids, never the token or a username
}

// ProfileClient looks up customers' usernames in the Instagram Graph API and
// caches the answers in a bounded in-memory cache. It is safe for
// concurrent use.
type ProfileClient struct {
	base        *url.URL // nil when BaseURL did not parse: every look-up falls back
	token       string
	timeout     time.Duration
	ttl         time.Duration
	negativeTTL time.Duration
	maxEntries  int
	client      *http.Client
	log         *slog.Logger
	now         func() time.Time

	mu    sync.Mutex
	cache map[string]profileEntry
}

// profileEntry is one cached answer; an empty username means "use the id".
type profileEntry struct {
	username string
	expires  time.Time
}

// NewProfileClient returns a client for cfg. A BaseURL that is not an
// absolute http(s) URL is logged and makes every look-up fall back.
func NewProfileClient(cfg ProfileConfig) *ProfileClient {
	c := &ProfileClient{
		token:       cfg.AccessToken,
		timeout:     orDefault(cfg.Timeout, defaultProfileTimeout),
		ttl:         orDefault(cfg.TTL, defaultProfileTTL),
		negativeTTL: orDefault(cfg.NegativeTTL, defaultNegativeTTL),
		maxEntries:  orDefault(cfg.MaxEntries, defaultMaxEntries),
		client:      cfg.HTTPClient,
		log:         cfg.Logger,
		now:         time.Now,
		cache:       make(map[string]profileEntry),
	}
	if c.client == nil {
		c.client = &http.Client{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultGraphURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL is configuration, not a secret, but it could carry one in
		// its query; the log says only that it is unusable.
		c.log.Error("instagram graph url is not an absolute http(s) url; usernames fall back to user ids")
		return c
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	c.base = u
	return c
}

func orDefault[T time.Duration | int](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Username returns the customer's Instagram username and LookupHit or
// LookupMiss, or userID and LookupFallback when there is no token, the
// user has not consented (Graph error 230), the Graph API fails or times
// out, or the answer holds no usable username. A cached negative answer
// is also reported as LookupFallback, since the id is what the caller gets.
func (c *ProfileClient) Username(ctx context.Context, userID string) (string, LookupOutcome) {
	if c.token == "" || c.base == nil || !lookupableID(userID) {
		return userID, LookupFallback
	}
	if e, ok := c.cached(userID); ok {
		if e.username == "" {
			return userID, LookupFallback
		}
		return e.username, LookupHit
	}
	name, ttl := c.fetch(ctx, userID)
	if ttl > 0 {
		c.store(userID, name, ttl)
	}
	if name == "" {
		return userID, LookupFallback
	}
	return name, LookupMiss
}

// lookupableID keeps ids that cannot name a profile ("", ".", "..", junk
// of any length) away from the URL path.
func lookupableID(id string) bool {
	return id != "" && id != "." && id != ".." && len(id) <= maxUserIDLen
}

// graphProfile is the Graph API's answer: a profile or an error.
type graphProfile struct {
	Username string      `json:"username"`
	Error    *graphError `json:"error"`
}

type graphError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    int    `json:"code"`
	Subcode int    `json:"error_subcode"`
}

// Graph API error codes a look-up treats as a lasting answer.
const (
	graphCodeConsentRequired = 230 // the user has not messaged the account or has not consented
	graphCodeInvalidParam    = 100
	graphSubcodeNoSuchObject = 33 // with code 100: the id names no object
)

// fetch asks the Graph API for userID's username. It returns the username
// ("" for none) and how long to cache that answer; 0 means not at all.
func (c *ProfileClient) fetch(ctx context.Context, userID string) (string, time.Duration) {
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, c.profileURL(userID), nil)
	if err != nil {
		c.log.ErrorContext(ctx, "instagram profile request not built", "user_id", userID)
		return "", errorTTL
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up (shutdown, client gone): that says nothing
			// about the Graph API, so nothing is cached.
			return "", 0
		}
		c.log.WarnContext(ctx, "instagram profile look-up failed",
			"user_id", userID, "error", c.redact(transportError(err)))
		return "", errorTTL
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProfileBody+1))
	if err != nil || len(body) > maxProfileBody {
		c.log.WarnContext(ctx, "instagram profile answer unreadable or too large",
			"user_id", userID, "status", resp.StatusCode)
		return "", errorTTL
	}
	var p graphProfile
	jsonErr := json.Unmarshal(body, &p)

	switch {
	case resp.StatusCode == http.StatusOK && jsonErr == nil && p.Error == nil:
		if !validUsername(p.Username) {
			c.log.InfoContext(ctx, "instagram profile has no usable username", "user_id", userID)
			return "", c.negativeTTL
		}
		return p.Username, c.ttl
	case p.Error != nil && p.Error.Code == graphCodeConsentRequired:
		c.log.DebugContext(ctx, "instagram profile needs user consent", "user_id", userID)
		return "", c.negativeTTL
	case resp.StatusCode == http.StatusNotFound,
		p.Error != nil && p.Error.Code == graphCodeInvalidParam && p.Error.Subcode == graphSubcodeNoSuchObject:
		c.log.InfoContext(ctx, "instagram profile not found", "user_id", userID, "status", resp.StatusCode)
		return "", c.negativeTTL
	}
	attrs := []any{"user_id", userID, "status", resp.StatusCode}
	if p.Error != nil {
		attrs = append(attrs,
			"graph_code", p.Error.Code,
			"graph_subcode", p.Error.Subcode,
			"graph_type", p.Error.Type,
			"graph_message", c.redact(domain.TruncateUTF8(p.Error.Message, 200)))
	}
	c.log.WarnContext(ctx, "instagram profile look-up failed", attrs...)
	return "", errorTTL
}

// profileURL is {base}/{userID}?fields=username&access_token=…; the id is
// path-escaped so it stays one path segment whatever it holds.
func (c *ProfileClient) profileURL(userID string) string {
	u := *c.base
	u.Path = c.base.Path + "/" + userID
	u.RawPath = c.base.EscapedPath() + "/" + url.PathEscape(userID)
	q := c.base.Query()
	q.Set("fields", "username")
	q.Set("access_token", c.token)
	u.RawQuery = q.Encode()
	return u.String()
}

// transportError describes a failed request without its URL, which holds
// the access token.
func transportError(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// redact removes the access token, raw or query-escaped, from text bound
// for a log; the Graph API and the transport may both echo it.
func (c *ProfileClient) redact(s string) string { return redactToken(c.token, s) }

// redactToken removes token, as is and query-escaped, from s: the Graph
// API's errors and URLs may echo the access token.
func redactToken(token, s string) string {
	if token == "" {
		return s
	}
	s = strings.ReplaceAll(s, token, "[redacted]")
	return strings.ReplaceAll(s, url.QueryEscape(token), "[redacted]")
}

// validUsername accepts what can go into the CRM's username column as is:
// valid UTF-8, no spaces or control characters, at most 100 bytes.
func validUsername(s string) bool {
	if s == "" || len(s) > maxUsernameLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
