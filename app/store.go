package main

import (
	"log/slog"

	"igmirror/config"
	"igmirror/domain"
	"igmirror/sqlite"
)

// openStore opens the store the config names: SQLite at SQLITE_PATH when
// DATABASE_URL is empty, else the shared PostgreSQL.
func openStore(cfg config.Config, log *slog.Logger) (domain.Store, error) {
	log = log.With("component", "store")
	return sqlite.Open(sqlite.Options{
		Path: cfg.SQLitePath, Synchronous: cfg.SQLiteSynchronous,
		InstanceID: cfg.InstanceID, LeaseTimeout: cfg.MirrorLeaseTimeout, Logger: log,
	})
}
