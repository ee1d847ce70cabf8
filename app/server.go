package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"igmirror/domain"
	"igmirror/instagram"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// apiError is an error with the status and the sentence the client sees.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func newAPIError(status int, msg string) error { return &apiError{status: status, msg: msg} }

// The listeners' names, as in logs and metrics, and the webhook's route.
const (
	listenerPublic  = "public"
	listenerAdmin   = "admin"
	listenerMetrics = "metrics"
	webhookRoute    = "/webhooks/instagram"
)

// newPublic builds the public listener's routes: webhooks, health, and
// metrics unless METRICS_ADDR gives them a listener of their own.
func (a *App) newPublic() *echo.Echo {
	e := a.newEcho(listenerPublic)
	wh := &webhookHandler{cfg: a.cfg, ingester: a.ingester, metrics: a.metrics, log: a.log,
		verifier: instagram.NewVerifier([]byte(a.cfg.InstagramAppSecret)), rejected: a.rejected,
		unknownNames: newSeenOnce(maxLoggedNames), invalidReasons: newSeenOnce(maxLoggedNames)}
	e.GET(webhookRoute, wh.verify)
	e.POST(webhookRoute, wh.receive)
	e.GET("/healthz", a.healthz)
	e.GET("/readyz", a.readyz)
	if a.cfg.MetricsAddr == "" {
		e.GET("/metrics", a.metricsHandler())
	}
	return e
}

// newMetricsListener builds the METRICS_ADDR listener: /metrics only.
func (a *App) newMetricsListener() *echo.Echo {
	e := a.newEcho(listenerMetrics)
	e.GET("/metrics", a.metricsHandler())
	return e
}

func (a *App) metricsHandler() echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
}

// newEcho returns an Echo with the shared middleware and error handler.
func (a *App) newEcho(listener string) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = a.errorHandler
	// No proxy in front is trusted: without this, c.RealIP() takes
	// X-Forwarded-For or X-Real-IP from any client, who could then choose
	// the remote_ip the access log records.
	e.IPExtractor = echo.ExtractIPDirect()
	e.Use(a.requestLog(listener))
	return e
}

// requestLog gives every request an id (echoed in X-Request-Id), logs one
// access line, and observes the latency histogram. It logs the path only:
// the query string of the subscription handshake carries the verify token.
func (a *App) requestLog(listener string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			req := c.Request()
			id := req.Header.Get(echo.HeaderXRequestID)
			if !validRequestID(id) {
				id = newRequestID()
			}
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			c.Set("request_id", id)
			err := callRecovering(next, c)
			if err != nil {
				// Let the error handler write the response, so the status is known.
				c.Error(err)
			}
			status := c.Response().Status
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			d := time.Since(start)
			a.metrics.observeHTTP(listener, route, status, d)
			if level := accessLevel(listener, req.Method, route, status); a.log.Enabled(req.Context(), level) {
				a.log.LogAttrs(req.Context(), level, "http request",
					slog.String("listener", listener), slog.String("request_id", id), slog.String("method", req.Method),
					slog.String("path", req.URL.Path), slog.String("route", route), slog.Int("status", status),
					slog.Int64("bytes_in", req.ContentLength), slog.Int64("bytes_out", c.Response().Size),
					slog.Float64("duration_ms", float64(d.Microseconds())/1000), slog.String("remote_ip", c.RealIP()))
			}
			return nil
		}
	}
}

// callRecovering runs next and turns a panic into an error, so that a bug
// in one handler answers a JSON 500 and still gets its access-log line
// instead of a dropped connection.
func callRecovering(next echo.HandlerFunc, c echo.Context) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler {
			panic(r)
		}
		err = fmt.Errorf("handler panic: %v\n%s", r, debug.Stack())
	}()
	return next(c)
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')) {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errorHandler is the one place errors become responses: a status and a
// JSON {"error": "..."} body. Internal errors are logged with detail and
// shown as a short generic sentence.
func (a *App) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := a.statusFor(err, c)
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, map[string]string{"error": msg})
}

func (a *App) statusFor(err error, c echo.Context) (int, string) {
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.msg
	case errors.As(err, &he):
		// The router's own answers get sentences in our style; other
		// HTTPErrors keep their message when it is meant for the client.
		switch {
		case he.Code == http.StatusNotFound:
			return he.Code, "not found: no endpoint at this path"
		case he.Code == http.StatusMethodNotAllowed:
			return he.Code, "method not allowed on this path"
		}
		msg := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok && he.Code < 500 {
			msg = s
		}
		return he.Code, msg
	case errors.Is(err, instagram.ErrSignatureMissing):
		return http.StatusUnauthorized, "missing X-Hub-Signature-256 header"
	case errors.Is(err, instagram.ErrSignatureInvalid):
		return http.StatusForbidden, "invalid X-Hub-Signature-256 signature"
	case errors.Is(err, instagram.ErrMalformed), errors.Is(err, domain.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, domain.ErrNotFound):
		return http.StatusNotFound, "not found"
	case errors.Is(err, domain.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, domain.ErrClosed):
		id, _ := c.Get("request_id").(string)
		a.log.Error("local store unavailable", "request_id", id, "path", c.Request().URL.Path, "err", err)
		c.Response().Header().Set("Retry-After", "5")
		return http.StatusServiceUnavailable, "local store unavailable; nothing was applied, please retry"
	}
	id, _ := c.Get("request_id").(string)
	a.log.Error("request failed", "request_id", id, "path", c.Request().URL.Path, "err", err)
	return http.StatusInternalServerError, "internal error; the request was not applied, please retry"
}
