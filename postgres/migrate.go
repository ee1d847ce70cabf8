package postgres

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"log/slog"

	"igmirror/internal/migration"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the pg_advisory_xact_lock key every instance takes
// before it looks at schema_migrations, so that instances starting at
// once apply each migration once ("igmirror" in ASCII).
const migrationLock int64 = 0x69676d6972726f72

// migrate applies every migration not yet recorded in schema_migrations,
// each in its own transaction with its record, under the advisory lock.
func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	all, err := migration.List(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	return migration.Apply(all, func(m migration.Migration) error { return applyMigration(ctx, db, m, log) })
}

func applyMigration(ctx context.Context, db *sql.DB, m migration.Migration, log *slog.Logger) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// A migration may rewrite a large table: no statement timeout for it
	// (the context still bounds it).
	if _, err := tx.ExecContext(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var done bool
	if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", m.Version).Scan(&done); err != nil {
		return err
	}
	if done {
		return tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	log.Info("postgres: migration applied", "version", m.Version, "name", m.Name)
	return nil
}
