package main

import (
	"log/slog"

	"igmirror/config"
	"igmirror/domain"
	"igmirror/postgres"
	"igmirror/sqlite"
)

// openStore opens the store the config names: SQLite at SQLITE_PATH when
// DATABASE_URL is empty (one instance, no set-up), else the PostgreSQL
// that any number of instances share.
func openStore(cfg config.Config, log *slog.Logger) (domain.Store, error) {
	log = log.With("component", "store")
	if cfg.UsesPostgres() {
		s, err := postgres.Open(postgres.Options{
			URL: cfg.DatabaseURL, InstanceID: cfg.InstanceID, LeaseTimeout: cfg.MirrorLeaseTimeout, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		log.Info("store: PostgreSQL", "database", postgres.Redacted(cfg.DatabaseURL), "instance_id", cfg.InstanceID, "lease_owner", s.Lease().Owner)
		return s, nil
	}
	s, err := sqlite.Open(sqlite.Options{
		Path: cfg.SQLitePath, Synchronous: cfg.SQLiteSynchronous,
		InstanceID: cfg.InstanceID, LeaseTimeout: cfg.MirrorLeaseTimeout, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("store: SQLite", "path", cfg.SQLitePath, "instance_id", cfg.InstanceID, "lease_owner", s.Lease().Owner)
	return s, nil
}
