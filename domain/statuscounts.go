package domain

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"
)

// status_counts holds how many messages are in each mirror state, so that
// the mirror's stats need not count them: a GROUP BY over the status index
// reads every message, about a second at ten million, at every call.
//
// The writer adds each commit's new messages by state (one statement per
// state, not per message). A trigger moves a message from one count to
// the other whenever its state changes, whichever statement changes it,
// inside that statement's transaction.

const statusMovedTrigger = `CREATE TRIGGER IF NOT EXISTS messages_status_moved
AFTER UPDATE OF mirror_status ON messages WHEN OLD.mirror_status IS NOT NEW.mirror_status
BEGIN
	UPDATE status_counts SET n = n - 1 WHERE status = OLD.mirror_status;
	INSERT INTO status_counts (status, n) VALUES (NEW.mirror_status, 1) ON CONFLICT (status) DO UPDATE SET n = n + 1;
END`

// migrateStatusCounts creates status_counts from the stored messages and
// its trigger, in one transaction, when the table is missing.
func migrateStatusCounts(db *gorm.DB, log *slog.Logger) error {
	if have, err := schemaHas(db, "table", "status_counts"); err != nil || have {
		return err
	}
	start := time.Now()
	err := db.Transaction(func(tx *gorm.DB) error {
		return execEach(tx,
			"CREATE TABLE status_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
			"INSERT INTO status_counts (status, n) VALUES ('pending', 0), ('mirrored', 0), ('dropped', 0), ('failed', 0), ('disabled', 0)",
			"INSERT INTO status_counts (status, n) SELECT mirror_status, COUNT(*) FROM messages WHERE true GROUP BY mirror_status ON CONFLICT (status) DO UPDATE SET n = excluded.n",
			statusMovedTrigger)
	})
	if err != nil {
		return fmt.Errorf("create status_counts: %w", err)
	}
	if d := time.Since(start); d > time.Second {
		log.Info("sqlite migration: mirror states counted", "took", d.Round(time.Millisecond))
	}
	return nil
}

// countNewSQL adds n messages to a state's count. It is prepared once at
// open: preparing it in every commit took an eighth of the writer's time
// with single-message deliveries.
const countNewSQL = "INSERT INTO status_counts (status, n) VALUES (?, ?) ON CONFLICT (status) DO UPDATE SET n = n + excluded.n"

// countNew adds the batch's newly stored messages to status_counts.
func (s *Store) countNew(ctx context.Context, sqlTx *sql.Tx, batch []*writeReq) error {
	var by map[MirrorStatus]int64
	for _, r := range batch {
		for i, ok := range r.isNew {
			if ok {
				if by == nil {
					by = make(map[MirrorStatus]int64, 2)
				}
				by[r.msgs[i].MirrorStatus]++
			}
		}
	}
	if len(by) == 0 {
		return nil
	}
	stmt := sqlTx.StmtContext(ctx, s.counts)
	for st, n := range by {
		_, err := stmt.ExecContext(ctx, string(st), n)
		if err != nil {
			return fmt.Errorf("count new messages: %w", err)
		}
	}
	return nil
}
