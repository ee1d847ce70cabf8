package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"igmirror/domain"
	// The adapter's GORM driver registers "sqlite3" (mattn/go-sqlite3),
	// the driver the service uses.
	"igmirror/sqlite"
)

// createSchema makes an empty store at path with the service's own
// schema (its migration), then closes it.
func createSchema(path string) error {
	s, err := sqlite.Open(sqlite.Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	return s.Close()
}

// prefill adds rows messages (mirror status "disabled", random mids) to
// the store at path in SQLite's own loop, far faster than any client
// could; progress is called after each chunk.
func prefill(ctx context.Context, path string, rows int64, progress func(done int64)) error {
	if err := createSchema(path); err != nil {
		return err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=OFF")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "PRAGMA cache_size = -262144"); err != nil {
		return err
	}
	var maxID int64
	if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM messages").Scan(&maxID); err != nil {
		return err
	}
	// Timestamps as the service's driver writes a time.Time, spread over
	// the last 30 days.
	const chunk = 250_000
	for done := int64(0); done < rows; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(chunk, rows-done)
		// The random values are drawn in the recursive CTE, whose rows SQLite
		// materialises: drawn in a flattened subquery instead, each use of a
		// column would draw again (a user_id not its sender). The schema's
		// triggers count the rows by mirror state, as for the service's.
		q := fmt.Sprintf(`WITH RECURSIVE c(x, m, s, t) AS (SELECT 0, NULL, NULL, NULL UNION ALL
  SELECT x+1, '%s' || lower(hex(randomblob(16))), '55822019374' || (10000 + abs(random()) %% %d),
         strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || (abs(random()) %% 2592000) || ' seconds') || '+00:00'
  FROM c LIMIT %d)
INSERT INTO messages (id, instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at, mirror_status, user_id, attachments, reply_to_mid)
SELECT %d + x, m, s, '%s', 'inbound', 'Hi! Do you ship to Kyiv? #' || x, t, t, 'disabled', s, '', ''
FROM c WHERE x > 0`,
			midPrefix, customers, n+1, maxID+done, businessID)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
		done += n
		if progress != nil {
			progress(done)
		}
	}
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	// Written with synchronous=OFF, the file is mostly dirty pages in the
	// OS cache: flushed now, or the service's first checkpoint would pay
	// for gigabytes of someone else's writes inside the measurement.
	return syncFile(path)
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// preloadPending stores n messages as the webhook would, left pending:
// what a restart finds after the CRM was away.
func preloadPending(ctx context.Context, path string, n int) error {
	s, err := sqlite.Open(sqlite.Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer s.Close()
	p := newPayloads(nil, 7)
	now := time.Now().UTC().Add(-time.Minute)
	for done := 0; done < n; {
		k := min(500, n-done)
		msgs := make([]domain.Message, k)
		for i := range msgs {
			mid := midPrefix + fmt.Sprintf("%x", p.randomBytes())
			msgs[i] = domain.Message{
				InstagramMessageID: &mid,
				SenderID:           fmt.Sprintf("55822019374%d", 10000+p.rng.IntN(customers)),
				RecipientID:        businessID,
				Direction:          domain.Inbound,
				MessageText:        fmt.Sprintf("Hi! Do you ship to Kyiv? Привіт #%d", done+i),
				Timestamp:          now.Add(time.Duration(done+i) * time.Millisecond),
				MirrorStatus:       domain.MirrorPending,
			}
			if err := msgs[i].Validate(); err != nil {
				return err
			}
		}
		if _, err := s.Save(ctx, domain.Batch{Messages: msgs}); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		done += k
	}
	return nil
}

// rawBatchInserts is what SQLite alone does with 100-row INSERTs,
// perCommit rows (a multiple of 100) per transaction on one connection,
// into the service's messages table with its indexes and constraints (its
// UNIQUE mid included), WAL and synchronous=NORMAL (SQLite's
// defaults otherwise), no HTTP and no service code in between; building
// the rows' values is inside the timing. It returns rows per second.
func rawBatchInserts(ctx context.Context, path string, d time.Duration, perCommit int) (float64, error) {
	if err := createSchema(path); err != nil {
		return 0, err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	const perStmt = 100
	var b strings.Builder
	b.WriteString("INSERT INTO messages (id, instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at, mirror_status, user_id, attachments, reply_to_mid) VALUES ")
	for i := range perStmt {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	stmt, err := db.PrepareContext(ctx, b.String())
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	args := make([]any, 0, perStmt*12)
	perCommit = max(perStmt, perCommit/perStmt*perStmt)
	var id, rows int64
	var tx *sql.Tx
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		args = args[:0]
		now := time.Now().UTC()
		for range perStmt {
			id++
			sender := fmt.Sprintf("55822019374%d", 10000+rng.IntN(customers))
			mid := fmt.Sprintf("%s%016x%016x", midPrefix, rng.Uint64(), rng.Uint64())
			args = append(args, id, mid, sender, businessID, "inbound",
				fmt.Sprintf("Hi! Do you ship to Kyiv? #%d", id), now, now, "disabled", sender, "", "")
		}
		if rows%int64(perCommit) == 0 {
			if tx, err = db.BeginTx(ctx, nil); err != nil {
				return 0, err
			}
		}
		if _, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...); err != nil {
			_ = tx.Rollback()
			return 0, err
		}
		rows += perStmt
		if rows%int64(perCommit) == 0 {
			if err := tx.Commit(); err != nil {
				return 0, err
			}
			tx = nil
		}
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			return 0, err
		}
	}
	return float64(rows) / time.Since(start).Seconds(), nil
}
