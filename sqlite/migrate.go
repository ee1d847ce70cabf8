package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"igmirror/internal/migration"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrate applies every migration not yet recorded in schema_migrations,
// each in its own transaction with its record, so that a migration runs
// once even when two processes open a new file at the same moment (the
// writer's transactions take the write lock at BEGIN).
//
// A file written before numbered migrations (no schema_migrations, but a
// messages table) is brought over by the first migration: its messages
// are copied into the new table, which has the UNIQUE constraint, and the
// old bookkeeping tables (mid_keys, user_index, store_meta) are dropped.
func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	all, err := migration.List(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at DATETIME NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
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
	var done int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.Version).Scan(&done); err != nil {
		return err
	}
	if done > 0 {
		return tx.Rollback()
	}
	legacy := false
	if m.Version == 1 {
		if legacy, err = hasTable(ctx, tx, "messages"); err != nil {
			return err
		}
		if legacy {
			if err := setAsideLegacy(ctx, tx); err != nil {
				return err
			}
		}
	}
	start := time.Now()
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if legacy {
		n, err := copyLegacy(ctx, tx)
		if err != nil {
			return err
		}
		log.Info("sqlite: store written before numbered migrations brought over", "messages", n, "took", time.Since(start).Round(time.Millisecond))
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
		m.Version, m.Name, time.Now().UTC()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	log.Info("sqlite: migration applied", "version", m.Version, "name", m.Name)
	return nil
}

func hasTable(ctx context.Context, tx *sql.Tx, name string) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", name).Scan(&n)
	return n > 0, err
}

// setAsideLegacy renames the old messages table out of the way (its
// indexes and triggers dropped, so their names are free for the new
// schema) and drops the old bookkeeping tables, which the new schema
// either replaces or no longer needs.
func setAsideLegacy(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "SELECT type, name FROM sqlite_master WHERE tbl_name = 'messages' AND type IN ('index', 'trigger') AND sql IS NOT NULL")
	if err != nil {
		return err
	}
	var drops []string
	for rows.Next() {
		var typ, name string
		if err := rows.Scan(&typ, &name); err != nil {
			rows.Close()
			return err
		}
		drops = append(drops, fmt.Sprintf("DROP %s %s", strings.ToUpper(typ), quoteIdent(name)))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	drops = append(drops, "ALTER TABLE messages RENAME TO legacy_messages")
	for _, t := range []string{"mid_keys", "user_index", "store_meta", "status_counts", "health_checks"} {
		drops = append(drops, "DROP TABLE IF EXISTS "+t)
	}
	for _, q := range drops {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// copyLegacy copies the old messages, ids kept, into the new table. A mid
// stored twice by the old code (its bookkeeping could be fooled) keeps
// its first message.
func copyLegacy(ctx context.Context, tx *sql.Tx) (int64, error) {
	const cols = "id, instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at, mirror_status, " +
		"user_id, attachments, reply_to_mid, deleted, deleted_at, mirror_attempts, mirror_last_error, mirror_last_attempt_at, mirrored_at, mirror_degraded"
	res, err := tx.ExecContext(ctx, "INSERT INTO messages ("+cols+") SELECT "+cols+" FROM legacy_messages WHERE true ORDER BY id ON CONFLICT DO NOTHING")
	if err != nil {
		return 0, fmt.Errorf("copy messages: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, "DROP TABLE legacy_messages"); err != nil {
		return 0, err
	}
	return n, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
