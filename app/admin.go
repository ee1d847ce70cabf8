package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"igmirror/domain"
	"igmirror/events"

	"github.com/labstack/echo/v4"
)

// adminBodyLimit bounds admin request bodies; they carry one message or a
// few filters.
const adminBodyLimit = 1 << 20

// newAdmin builds the admin listener's routes. The token check wraps the
// whole listener, not a route group: so every path, known or not, is
// refused without the token, and a wrong method on a known path is a 405
// rather than the group's catch-all 404.
func (a *App) newAdmin() *echo.Echo {
	e := a.newEcho(listenerAdmin)
	e.Use(a.requireToken)
	g := e.Group("/admin")
	g.GET("/messages", a.listMessages)
	g.GET("/messages/:id", a.getMessage)
	g.POST("/messages", a.postMessage)
	g.GET("/mirror/stats", a.mirrorStats)
	g.POST("/mirror/resync", a.resync)
	g.GET("/deliveries", a.listDeliveries)
	g.GET("/deliveries/:id", a.getDelivery)
	g.GET("/deliveries/:id/raw", a.getDeliveryRaw)
	g.POST("/deliveries/replay", a.replayDeliveries)
	g.GET("/openapi.json", a.openapiDoc)
	g.GET("/subscription", a.subscription)
	g.GET("/deliveries/rejected", a.rejectedDeliveries)
	return e
}

// requireToken checks "Authorization: Bearer <ADMIN_TOKEN>" in constant
// time. Hashing both sides first keeps the compare's time independent of
// the token's length too.
func (a *App) requireToken(next echo.HandlerFunc) echo.HandlerFunc {
	want := sha256.Sum256([]byte(a.cfg.AdminToken))
	return func(c echo.Context) error {
		if a.cfg.AdminToken == "" {
			return newAPIError(http.StatusForbidden, "admin API disabled: ADMIN_TOKEN is not set")
		}
		tok, ok := bearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
		if !ok {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="igmirror-admin"`)
			return newAPIError(http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <ADMIN_TOKEN>")
		}
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="igmirror-admin", error="invalid_token"`)
			return newAPIError(http.StatusUnauthorized, "invalid bearer token")
		}
		return next(c)
	}
}

// bearerToken takes the token out of an Authorization header value. The
// scheme is case-insensitive (RFC 9110 section 11.1); any other scheme,
// such as Basic, is no token at all.
func bearerToken(h string) (string, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(scheme):])
	return tok, tok != ""
}

func badParam(name, why string) error {
	return newAPIError(http.StatusBadRequest, fmt.Sprintf("invalid %s: %s", name, why))
}

func parseTimeParam(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badParam(name, "want an RFC 3339 time such as 2026-11-21T00:00:00Z")
	}
	return t.UTC(), nil
}

// parseWindow reads the since, until and limit parameters of an admin
// list; limit is 50 when absent.
func parseWindow(q url.Values) (since, until time.Time, limit int, err error) {
	if since, err = parseTimeParam("since", q.Get("since")); err != nil {
		return time.Time{}, time.Time{}, 0, err
	}
	if until, err = parseTimeParam("until", q.Get("until")); err != nil {
		return time.Time{}, time.Time{}, 0, err
	}
	limit = 50
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return since, until, 0, badParam("limit", "want a whole number from 1 to 500")
		}
		limit = n
	}
	return since, until, limit, nil
}

func parseStatus(v string) (domain.MirrorStatus, error) {
	s := domain.MirrorStatus(v)
	if v != "" && !s.Valid() {
		return "", badParam("mirror_status", "want pending, mirrored, dropped, failed or disabled")
	}
	return s, nil
}

// rejectedDeliveries is GET /admin/deliveries/rejected: the last refused
// webhook POSTs, newest first (time, peer, reason, size; never a body).
func (a *App) rejectedDeliveries(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"rejected": a.rejected.list(), "capacity": a.rejected.capacity()})
}

// listMessages is GET /admin/messages: newest first, filtered, paged.
func (a *App) listMessages(c echo.Context) error {
	q := c.QueryParams()
	f := domain.ListFilter{UserID: q.Get("user_id"), Cursor: q.Get("cursor")}
	if d := q.Get("direction"); d != "" {
		f.Direction = domain.Direction(d)
		if !f.Direction.Valid() {
			return badParam("direction", "want inbound or outbound")
		}
	}
	var err error
	if f.MirrorStatus, err = parseStatus(q.Get("mirror_status")); err != nil {
		return err
	}
	if f.Since, f.Until, f.Limit, err = parseWindow(q); err != nil {
		return err
	}
	msgs, next, err := a.store.List(c.Request().Context(), f)
	if errors.Is(err, domain.ErrBadCursor) {
		return badParam("cursor", "not a cursor this service handed out")
	}
	if err != nil {
		return err
	}
	if msgs == nil {
		msgs = []domain.Message{}
	}
	return c.JSON(http.StatusOK, map[string]any{"messages": msgs, "next_cursor": next})
}

// getMessage is GET /admin/messages/:id.
func (a *App) getMessage(c echo.Context) error {
	id, err := idParam(c)
	if err != nil {
		return err
	}
	m, err := a.store.Get(c.Request().Context(), id)
	if errors.Is(err, domain.ErrNotFound) {
		return newAPIError(http.StatusNotFound, fmt.Sprintf("message %d not found", id))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

// idParam reads the :id of a route: a positive whole number.
func idParam(c echo.Context) (int64, error) {
	if strings.Contains(c.Param("id"), "/") {
		// Echo's router hands /admin/messages/1/history to the :id route
		// with id "1/history": that path is no endpoint, not a bad id.
		return 0, echo.ErrNotFound
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, badParam("id", "want a positive whole number")
	}
	return id, nil
}

// newMessage is the body of POST /admin/messages.
type newMessage struct {
	SenderID           string     `json:"sender_id"`
	RecipientID        string     `json:"recipient_id"`
	Direction          string     `json:"direction"`
	MessageText        string     `json:"message_text"`
	InstagramMessageID *string    `json:"instagram_message_id"`
	Timestamp          *time.Time `json:"timestamp"`
}

// decodeJSON reads a size-limited JSON body into v, refusing unknown
// fields. An empty body leaves v as it is when allowEmpty.
func decodeJSON(c echo.Context, v any, allowEmpty bool) error {
	body, err := readLimited(c.Response().Writer, c.Request(), adminBodyLimit)
	if errors.Is(err, errTooLarge) {
		return newAPIError(http.StatusRequestEntityTooLarge, "request body too large")
	}
	if err != nil {
		return newAPIError(http.StatusBadRequest, "could not read request body")
	}
	if allowEmpty && len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return newAPIError(http.StatusBadRequest, "invalid JSON body: "+jsonProblem(err))
	}
	if dec.More() {
		return newAPIError(http.StatusBadRequest, "invalid JSON body: trailing data")
	}
	return nil
}

// jsonProblem describes a decoding error without echoing the body.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s has the wrong type", te.Field)
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return "timestamp must be an RFC 3339 time"
	}
	if s := err.Error(); strings.HasPrefix(s, "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(s, "json: unknown field ")
	}
	return "not a JSON object of the expected shape"
}

// postMessage is POST /admin/messages: record a message another service
// sent or received, through the same save-then-publish path as a webhook.
func (a *App) postMessage(c echo.Context) error {
	var in newMessage
	if err := decodeJSON(c, &in, false); err != nil {
		return err
	}
	if strings.TrimSpace(in.MessageText) == "" {
		return badParam("message_text", "must not be empty")
	}
	m := domain.Message{
		InstagramMessageID: in.InstagramMessageID,
		SenderID:           in.SenderID,
		RecipientID:        in.RecipientID,
		Direction:          domain.Direction(in.Direction),
		MessageText:        in.MessageText,
		Timestamp:          time.Now().UTC(),
	}
	if in.Timestamp != nil {
		m.Timestamp = in.Timestamp.UTC()
	}
	if err := m.Validate(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	res, err := a.ingester.ingest(ctx, "admin", domain.Batch{Messages: []domain.Message{m}})
	if err != nil {
		return err
	}
	if len(res.New) == 1 {
		return c.JSON(http.StatusCreated, res.New[0])
	}
	// Already stored: idempotent, answer with what is there.
	existing, err := a.store.GetByMID(ctx, m.MID())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, existing)
}

// mirrorStats is GET /admin/mirror/stats.
func (a *App) mirrorStats(c echo.Context) error {
	counts, err := a.store.CountByStatus(c.Request().Context())
	if err != nil {
		return err
	}
	st := a.mirrorStatus()
	// Read once, so that dropped is the sum of the reasons shown.
	droppedFull, droppedShut := a.bus.Dropped(events.ReasonQueueFull), a.bus.Dropped(events.ReasonClosed)
	out := map[string]any{
		"enabled":        a.pool != nil,
		"queue_depth":    a.bus.Len(),
		"queue_capacity": a.bus.Cap(),
		"workers":        0,
		"published":      a.bus.Published(),
		"dropped":        droppedFull + droppedShut,
		"dropped_by_reason": map[string]uint64{
			events.ReasonQueueFull: droppedFull,
			events.ReasonClosed:    droppedShut,
		},
		"mirrored":         uint64(0),
		"failed":           uint64(0),
		"retried":          uint64(0),
		"pending":          counts[domain.MirrorPending],
		"messages":         counts,
		"last_success_at":  nil,
		"last_error_at":    nil,
		"crm_connected":    st.Connected,
		"crm_state":        st.State,
		"crm_last_error":   st.LastError,
		"crm_state_since":  st.Since,
		"reconcile_offers": uint64(0),
	}
	if p := a.pool; p != nil {
		out["workers"] = p.Workers()
		out["mirrored"] = p.Count("ok") + p.Count("already_present")
		out["failed"] = p.Count("permanent_error") + p.Count("row_failed")
		out["retried"] = p.Retried()
		out["last_success_at"] = timeOrNil(p.LastSuccess())
		out["last_error_at"] = timeOrNil(p.LastError())
		out["reconcile_offers"] = a.rec.Offered()
	}
	return c.JSON(http.StatusOK, out)
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// resyncRequest is the body (or query) of POST /admin/mirror/resync.
type resyncRequest struct {
	Since        string `json:"since"`
	Until        string `json:"until"`
	MirrorStatus string `json:"mirror_status"`
}

// resync is POST /admin/mirror/resync: offer the chosen messages to the
// mirror again without ever waiting for the queue. Without mirror_status
// it takes every message not yet mirrored; mirror_status=mirrored
// re-checks mirrored ones (the CRM is looked at before any insert).
func (a *App) resync(c echo.Context) error {
	if a.pool == nil {
		return newAPIError(http.StatusConflict, "crm mirror is disabled (CRM_MYSQL_ENABLED=false)")
	}
	var in resyncRequest
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	q := c.QueryParams()
	for _, p := range []struct {
		dst *string
		key string
	}{{&in.Since, "since"}, {&in.Until, "until"}, {&in.MirrorStatus, "mirror_status"}} {
		if *p.dst == "" {
			*p.dst = q.Get(p.key)
		}
	}
	var cq domain.CandidateQuery
	var err error
	if cq.Since, err = parseTimeParam("since", in.Since); err != nil {
		return err
	}
	if cq.Until, err = parseTimeParam("until", in.Until); err != nil {
		return err
	}
	status, err := parseStatus(in.MirrorStatus)
	if err != nil {
		return err
	}
	if status != "" {
		cq.Statuses = []domain.MirrorStatus{status}
	} else {
		cq.Statuses = []domain.MirrorStatus{domain.MirrorPending, domain.MirrorDropped, domain.MirrorFailed, domain.MirrorDisabled}
	}
	offered, turned, err := a.rec.Resync(c.Request().Context(), cq)
	if err != nil {
		return err
	}
	a.log.Info("resync", "offered", offered, "turned_away", turned, "mirror_status", string(status))
	return c.JSON(http.StatusOK, map[string]int{"offered": offered, "turned_away": turned})
}

// subscription is GET /admin/subscription: the webhook subscription as
// the last check found it, with the check's error (token-free) and how
// often it runs (0 = never: no access token or SUBSCRIPTION_CHECK_INTERVAL=0).
// ?check=1 checks now instead of showing the last result.
func (a *App) subscription(c echo.Context) error {
	st := a.subs.Status()
	if c.QueryParam("check") == "1" {
		st = a.subs.Check(c.Request().Context())
	}
	interval := a.cfg.SubscriptionCheckInterval
	if !a.subs.Enabled() {
		interval = 0
	}
	return c.JSON(http.StatusOK, map[string]any{
		"state":                  st.State,
		"subscribed_fields":      st.Fields,
		"since":                  st.Since,
		"last_check":             timeOrNil(st.LastCheck),
		"error":                  st.Error,
		"check_interval_seconds": interval.Seconds(),
		"access_token_set":       a.cfg.InstagramAccessToken != "",
	})
}
