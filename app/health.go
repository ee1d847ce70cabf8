package main

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// healthz is liveness: the process answers.
func (a *App) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyzTimeout bounds the write /readyz (and the store_ready gauge) tries.
const readyzTimeout = 2 * time.Second

// storeReadyTTL is how long the store_ready gauge shows the last check's
// result before a scrape checks again itself.
const storeReadyTTL = 30 * time.Second

// readyz is readiness: the local store (SQLite or PostgreSQL) takes a write. The CRM's state and the
// webhook subscription's are reported but never fail it, since messages
// are stored without the CRM, and a lost subscription is not cured by
// taking this instance out of a load balancer. It is on the public
// listener, so the CRM's last error, which names its user and addresses,
// and the subscription check's stay out of it: operators read them in
// /admin/mirror/stats and /admin/subscription.
func (a *App) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyzTimeout)
	defer cancel()
	crm := a.mirrorStatus()
	crm.LastError = ""
	sub := a.subs.Status()
	body := map[string]any{"crm": crm, "subscription": map[string]any{
		"state": sub.State, "since": sub.Since, "last_check": timeOrNil(sub.LastCheck),
	}}
	err := a.store.CheckWritable(ctx)
	a.ready.set(err == nil)
	// "store" names the check whatever the backend; "sqlite" stays for
	// the probes written when SQLite was the only one.
	backend := "sqlite"
	if a.cfg.UsesPostgres() {
		backend = "postgres"
	}
	body["backend"] = backend
	if err != nil {
		a.log.Warn("readiness: local store not writable", "backend", backend, "err", err)
		body["status"] = "not ready"
		body["store"] = "not writable"
		if backend == "sqlite" {
			body["sqlite"] = "not writable"
		}
		return c.JSON(http.StatusServiceUnavailable, body)
	}
	body["status"] = "ready"
	body["store"] = "ok"
	if backend == "sqlite" {
		body["sqlite"] = "ok"
	}
	return c.JSON(http.StatusOK, body)
}
