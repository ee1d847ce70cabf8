package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"igmirror/domain"
	"igmirror/instagram"

	"github.com/labstack/echo/v4"
)

// maxReplay bounds how many deliveries one replay call re-ingests; an
// operator pages through a larger window with since/until.
const maxReplay = 10000

// listDeliveries is GET /admin/deliveries: the journal, newest first.
func (a *App) listDeliveries(c echo.Context) error {
	q := c.QueryParams()
	f := domain.DeliveryFilter{Cursor: q.Get("cursor")}
	var err error
	if f.Since, f.Until, f.Limit, err = parseWindow(q); err != nil {
		return err
	}
	ds, next, err := a.store.ListDeliveries(c.Request().Context(), f)
	if errors.Is(err, domain.ErrBadCursor) {
		return badParam("cursor", "not a cursor this service handed out")
	}
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []domain.Delivery{}
	}
	return c.JSON(http.StatusOK, map[string]any{"deliveries": ds, "next_cursor": next, "journal_enabled": a.cfg.DeliveryRetention > 0})
}

// deliveryParam reads the :id of a delivery route.
func (a *App) deliveryParam(c echo.Context) (domain.Delivery, error) {
	id, err := idParam(c)
	if err != nil {
		return domain.Delivery{}, err
	}
	d, err := a.store.GetDelivery(c.Request().Context(), id)
	if errors.Is(err, domain.ErrNotFound) {
		return domain.Delivery{}, newAPIError(http.StatusNotFound, fmt.Sprintf("delivery %d not found", id))
	}
	return d, err
}

// getDelivery is GET /admin/deliveries/:id: when it came and what it yielded.
func (a *App) getDelivery(c echo.Context) error {
	d, err := a.deliveryParam(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// getDeliveryRaw is GET /admin/deliveries/:id/raw: the exact bytes, with
// the original signature header, so that
//
//	curl -D headers … /raw | curl --data-binary @- -H "X-Hub-Signature-256: …"
//
// re-posts it verifiably.
func (a *App) getDeliveryRaw(c echo.Context) error {
	d, err := a.deliveryParam(c)
	if err != nil {
		return err
	}
	if d.Signature != "" {
		c.Response().Header().Set("X-Hub-Signature-256", d.Signature)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, d.Body)
}

// replayRequest is the body (or query) of POST /admin/deliveries/replay.
type replayRequest struct {
	Since string  `json:"since"`
	Until string  `json:"until"`
	IDs   []int64 `json:"ids"`
}

// replayResult is what a replay did.
type replayResult struct {
	Replayed    int `json:"replayed"`    // deliveries re-ingested
	Unparseable int `json:"unparseable"` // journaled bodies the current parser refuses
	Stored      int `json:"stored"`      // messages stored now (missing before)
	Duplicates  int `json:"duplicates"`
	Unsent      int `json:"unsent"`
	Edited      int `json:"edited"`
	// Truncated is true when the window held more than one call replays;
	// replay again from the last delivery's time.
	Truncated bool `json:"truncated"`
}

// replayDeliveries is POST /admin/deliveries/replay: re-parse each chosen
// journaled delivery with the current parser and ingest it through the
// same save-then-publish path and dedupe as a webhook. What was stored
// before is a duplicate; what an older parser missed is stored now, once.
func (a *App) replayDeliveries(c echo.Context) error {
	var in replayRequest
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	q := c.QueryParams()
	if in.Since == "" {
		in.Since = q.Get("since")
	}
	if in.Until == "" {
		in.Until = q.Get("until")
	}
	if ids := q.Get("ids"); ids != "" && len(in.IDs) == 0 {
		for _, s := range strings.Split(ids, ",") {
			id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil || id < 1 {
				return badParam("ids", "want positive whole numbers separated by commas")
			}
			in.IDs = append(in.IDs, id)
		}
	}
	since, err := parseTimeParam("since", in.Since)
	if err != nil {
		return err
	}
	until, err := parseTimeParam("until", in.Until)
	if err != nil {
		return err
	}
	if len(in.IDs) == 0 && since.IsZero() && until.IsZero() {
		return newAPIError(http.StatusBadRequest, "say which deliveries to replay: since and/or until (RFC 3339), or ids")
	}
	if len(in.IDs) > 0 && (!since.IsZero() || !until.IsZero()) {
		return newAPIError(http.StatusBadRequest, "give either ids or since/until, not both")
	}
	if len(in.IDs) > maxReplay {
		return badParam("ids", fmt.Sprintf("at most %d per call", maxReplay))
	}
	ctx := c.Request().Context()
	ids := in.IDs
	var res replayResult
	if len(ids) == 0 {
		if ids, res.Truncated, err = a.deliveryIDs(ctx, since, until); err != nil {
			return err
		}
	}
	for _, id := range ids {
		d, err := a.store.GetDelivery(ctx, id)
		if errors.Is(err, domain.ErrNotFound) {
			return newAPIError(http.StatusNotFound, fmt.Sprintf("delivery %d not found", id))
		}
		if err != nil {
			return err
		}
		if err := a.replayOne(ctx, d, &res); err != nil {
			return err
		}
	}
	a.log.Info("deliveries replayed", "replayed", res.Replayed, "stored", res.Stored, "duplicates", res.Duplicates, "unparseable", res.Unparseable)
	return c.JSON(http.StatusOK, res)
}

// deliveryIDs lists the journal's ids received in [since, until), oldest
// first, at most maxReplay of them.
func (a *App) deliveryIDs(ctx context.Context, since, until time.Time) ([]int64, bool, error) {
	var ids []int64
	f := domain.DeliveryFilter{Since: since, Until: until, Limit: 500}
	for {
		page, next, err := a.store.ListDeliveries(ctx, f)
		if err != nil {
			return nil, false, err
		}
		for _, d := range page {
			ids = append(ids, d.ID)
		}
		if next == "" {
			break
		}
		if len(ids) > 10*maxReplay {
			return nil, false, newAPIError(http.StatusBadRequest, fmt.Sprintf("the window holds more than %d deliveries; narrow since/until", 10*maxReplay))
		}
		f.Cursor = next
	}
	truncated := len(ids) > maxReplay
	// Oldest first, as they arrived.
	for i, j := 0, len(ids)-1; i < j; i, j = i+1, j-1 {
		ids[i], ids[j] = ids[j], ids[i]
	}
	if truncated {
		ids = ids[:maxReplay]
	}
	return ids, truncated, nil
}

// replayOne re-parses and re-ingests one journaled delivery.
func (a *App) replayOne(ctx context.Context, d domain.Delivery, res *replayResult) error {
	parsed, err := instagram.Parse(d.Body)
	if err != nil {
		res.Unparseable++
		a.log.Warn("journaled delivery no longer parses; not replayed", "delivery_id", d.ID, "err", err)
		return nil
	}
	out, err := a.ingester.ingest(ctx, "replay", batchOf(parsed))
	if err != nil {
		return err
	}
	res.Replayed++
	res.Stored += len(out.New)
	res.Duplicates += out.Duplicates
	res.Unsent += out.Unsent
	res.Edited += out.Edited
	return nil
}
