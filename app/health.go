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

// readyz is readiness: SQLite takes a write. The CRM's state is reported
// but never fails it, since messages are stored without the CRM. It is on
// the public listener, so the CRM's last error, which names its user and
// addresses, stays out of it: operators read it in /admin/mirror/stats.
func (a *App) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	crm := a.mirrorStatus()
	crm.LastError = ""
	body := map[string]any{"crm": crm}
	if err := a.store.CheckWritable(ctx); err != nil {
		a.log.Warn("readiness: sqlite not writable", "err", err)
		body["status"] = "not ready"
		body["sqlite"] = "not writable"
		return c.JSON(http.StatusServiceUnavailable, body)
	}
	body["status"] = "ready"
	body["sqlite"] = "ok"
	return c.JSON(http.StatusOK, body)
}
