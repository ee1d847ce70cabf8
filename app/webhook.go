package main

import (
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"igmirror/config"
	"igmirror/domain"
	"igmirror/instagram"

	"github.com/labstack/echo/v4"
)

// webhookHandler serves Meta's subscription handshake and deliveries.
type webhookHandler struct {
	cfg      config.Config
	ingester *ingester
	metrics  *metrics
	log      *slog.Logger
	verifier *instagram.Verifier // of cfg.InstagramAppSecret
	rejected *rejections         // refused POSTs, for the admin API
	// Names and reasons already logged, so that each is logged once per
	// process however often Meta sends it.
	unknownNames   *seenOnce
	invalidReasons *seenOnce
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
// Only the envelope can make an authentic delivery a 400: an item that
// cannot be used is counted and logged, and the rest is stored.
func (h *webhookHandler) receive(c echo.Context) error {
	secret := h.cfg.InstagramAppSecret
	req := c.Request()
	if secret == "" && !h.cfg.InstagramAllowUnsigned {
		h.reject(c, rejectNotConfigured, req.ContentLength)
		return newAPIError(http.StatusServiceUnavailable, "webhook not configured: INSTAGRAM_APP_SECRET is not set")
	}
	body, err := readLimited(c.Response().Writer, req, h.cfg.HTTPMaxBodySize)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			h.reject(c, rejectTooLarge, req.ContentLength)
			return newAPIError(http.StatusRequestEntityTooLarge, "request body too large")
		}
		h.reject(c, rejectUnreadable, int64(len(body)))
		return newAPIError(http.StatusBadRequest, "could not read request body")
	}
	sig := req.Header.Get("X-Hub-Signature-256")
	if secret != "" {
		if err := h.verifier.Verify(body, sig); err != nil {
			if errors.Is(err, instagram.ErrSignatureMissing) {
				h.reject(c, rejectMissingSignature, int64(len(body)))
			} else {
				h.reject(c, rejectBadSignature, int64(len(body)))
			}
			return err
		}
	}
	d, err := instagram.Parse(body)
	if err != nil {
		h.reject(c, rejectMalformed, int64(len(body)))
		return err
	}
	if len(d.Unknown) > 0 || len(d.Invalid) > 0 {
		h.logFirstSeen(c, d)
	}
	b := batchOf(d)
	if h.cfg.DeliveryRetention > 0 {
		// Journaled in the same transaction as the messages: exactly the
		// bytes the signature covers, with the header, so the delivery can
		// be replayed or re-posted verifiably.
		b.Delivery = &domain.Delivery{
			ReceivedAt: time.Now().UTC(),
			Signature:  sig,
			Body:       body,
			Items:      itemsByKind(d.Counts),
		}
	}
	res, err := h.ingester.ingest(req.Context(), "webhook", b)
	if err != nil {
		h.metrics.deliveries.WithLabelValues(deliveryStoreError).Inc()
		return err
	}
	h.metrics.delivered.Inc()
	h.metrics.lastDelivery.SetToCurrentTime()
	h.metrics.countItems(d.Counts)
	return c.JSONBlob(http.StatusOK, receipt(len(res.New), res.Duplicates, res.Unsent))
}

// batchOf is what a parsed delivery asks of the store, the same for a
// webhook and for a replay of the journal.
func batchOf(d *instagram.Delivery) domain.Batch {
	return domain.Batch{Messages: d.Messages, Unsends: d.Unsends, Edits: d.Edits}
}

// reject counts a refused POST under its outcome and keeps it, without
// its body, for GET /admin/deliveries/rejected.
func (h *webhookHandler) reject(c echo.Context, reason string, size int64) {
	h.metrics.deliveries.WithLabelValues(rejectionOutcome[reason]).Inc()
	if size < 0 {
		size = -1
	}
	h.rejected.add(rejection{At: time.Now().UTC(), Peer: c.RealIP(), Reason: reason, Size: size})
}

// logFirstSeen logs each unknown name and each invalid reason of d the
// first time this process sees it. Names and reasons are field names
// from the parser, never message text.
func (h *webhookHandler) logFirstSeen(c echo.Context, d *instagram.Delivery) {
	ctx := c.Request().Context()
	id, _ := c.Get("request_id").(string)
	for _, name := range d.Unknown {
		if h.unknownNames.first(name) {
			h.log.LogAttrs(ctx, slog.LevelWarn, "webhook delivery holds a kind this service does not know; counted as kind=other",
				slog.String("name", name), slog.String("request_id", id))
		}
	}
	for _, reason := range d.Invalid {
		if h.invalidReasons.first(reason) {
			h.log.LogAttrs(ctx, slog.LevelWarn, "webhook item could not be used; counted as kind=invalid, the rest of the delivery stored",
				slog.String("reason", reason), slog.String("request_id", id))
		}
	}
}

// receipt is the 200 body, {"duplicates":D,"stored":S,"unsent":U} and a
// newline, byte for byte what c.JSON makes of the map, written without
// the map, the reflection and the query parsing (for ?pretty) c.JSON
// spends on every delivery.
func receipt(stored, duplicates, unsent int) []byte {
	b := make([]byte, 0, 64)
	b = append(b, `{"duplicates":`...)
	b = strconv.AppendInt(b, int64(duplicates), 10)
	b = append(b, `,"stored":`...)
	b = strconv.AppendInt(b, int64(stored), 10)
	b = append(b, `,"unsent":`...)
	b = strconv.AppendInt(b, int64(unsent), 10)
	return append(b, "}\n"...)
}

var errTooLarge = errors.New("body too large")

// maxPrealloc bounds what readAll allocates before any byte arrives. The
// declared length is the client's word, and the body is read before the
// signature is checked: were the declared length allocated up front, an
// unauthenticated client could pin a large buffer per connection by
// declaring a large body and sending nothing. A real delivery is a few
// KiB, so 64 KiB covers it in one allocation; a larger body grows as it
// is read, each step paid for by bytes actually received.
const maxPrealloc = 64 << 10

// readAll is io.ReadAll with the buffer sized from the declared length up
// front (bounded by maxPrealloc), instead of grown from 512 bytes by
// doubling, a copy each time.
func readAll(r io.Reader, size int64) ([]byte, error) {
	switch {
	case size < 0:
		size = 512
	case size > maxPrealloc:
		size = maxPrealloc
	}
	// One byte over, so that reading the end needs no growth.
	b := make([]byte, 0, size+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// readLimited reads the whole body, refusing more than limit bytes without
// reading them (the server then closes the connection).
func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errTooLarge
	}
	return body, err
}
