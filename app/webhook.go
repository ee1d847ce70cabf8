package main

import (
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"igmirror/config"
	"igmirror/instagram"

	"github.com/labstack/echo/v4"
)

// webhookHandler serves Meta's subscription handshake and deliveries.
type webhookHandler struct {
	cfg      config.Config
	ingester *ingester
	metrics  *metrics
	log      *slog.Logger
}

// verify answers the subscription handshake: the challenge, exactly, when
// the verify token matches a configured one.
func (h *webhookHandler) verify(c echo.Context) error {
	q := c.QueryParams()
	token := q.Get("hub.verify_token")
	want := h.cfg.InstagramVerifyToken
	if q.Get("hub.mode") != "subscribe" || want == "" ||
		subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		return newAPIError(http.StatusForbidden, "verification failed")
	}
	return c.String(http.StatusOK, q.Get("hub.challenge"))
}

// receive stores every message of one delivery and answers 200 only after
// the commit. Signature first, on the raw bytes; then parse; then save.
func (h *webhookHandler) receive(c echo.Context) error {
	secret := h.cfg.InstagramAppSecret
	if secret == "" && !h.cfg.InstagramAllowUnsigned {
		h.metrics.deliveries.WithLabelValues(deliveryUnsignedDeny).Inc()
		return newAPIError(http.StatusServiceUnavailable, "webhook not configured: INSTAGRAM_APP_SECRET is not set")
	}
	body, err := readLimited(c.Response().Writer, c.Request(), h.cfg.HTTPMaxBodySize)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			h.metrics.deliveries.WithLabelValues(deliveryTooLarge).Inc()
			return newAPIError(http.StatusRequestEntityTooLarge, "request body too large")
		}
		h.metrics.deliveries.WithLabelValues(deliveryBadRequest).Inc()
		return newAPIError(http.StatusBadRequest, "could not read request body")
	}
	if secret != "" {
		if err := instagram.VerifySignature([]byte(secret), body, c.Request().Header.Get("X-Hub-Signature-256")); err != nil {
			if errors.Is(err, instagram.ErrSignatureMissing) {
				h.metrics.deliveries.WithLabelValues(deliveryUnauthorized).Inc()
			} else {
				h.metrics.deliveries.WithLabelValues(deliveryForbidden).Inc()
			}
			return err
		}
	}
	d, err := instagram.Parse(body)
	if err != nil {
		h.metrics.deliveries.WithLabelValues(deliveryBadRequest).Inc()
		return err
	}
	res, err := h.ingester.ingest(c.Request().Context(), "webhook", d.Messages, d.Unsends)
	if err != nil {
		h.metrics.deliveries.WithLabelValues(deliveryStoreError).Inc()
		return err
	}
	h.metrics.deliveries.WithLabelValues(deliveryStored).Inc()
	h.metrics.countItems(d.Counts)
	return c.JSON(http.StatusOK, map[string]int{"stored": len(res.New), "duplicates": res.Duplicates, "unsent": res.Unsent})
}

var errTooLarge = errors.New("body too large")

// readLimited reads the whole body, refusing more than limit bytes without
// reading them (the server then closes the connection).
func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errTooLarge
	}
	return body, err
}
