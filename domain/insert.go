package domain

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// insertCols are the columns a new message is inserted with; the rest
// take their defaults.
const insertCols = "(id, instagram_message_id, mid_key, sender_id, recipient_id, direction, message_text, timestamp, created_at, mirror_status, user_id, attachments, reply_to_mid)"

const colsPerRow = 13

// rowsPerStmt keeps each statement well under SQLite's bound-variable limit.
const rowsPerStmt = 400

// exactInsertRows is up to how many rows a statement of exactly that size
// is kept: group commits of single-message deliveries are mostly this small.
const exactInsertRows = 16

// largerInsertRows are the sizes kept above it, largest first; a batch
// is cut into statements of these sizes (and one exact remainder).
var largerInsertRows = []int{rowsPerStmt, 256, 128, 64, 32}

// insertStmts holds the writer's multi-row INSERT statements, prepared
// once at open: preparing a statement of a few hundred placeholders cost
// as much as running it, on every commit. Only the writer goroutine uses
// them (through its transaction), so no lock.
type insertStmts struct {
	byRows map[int]*sql.Stmt
}

// insertSQL is the INSERT of n rows. ON CONFLICT(mid_key) DO NOTHING
// skips a message whose mid key is held (a duplicate, or rarely another
// mid: see insertAll). Any other constraint failure rolls back the whole
// transaction (OR ROLLBACK), which the writer does on any error anyway:
// SQLite then keeps no statement journal, a copy of every page the
// statement touches (8% of the writer's time with 400-row statements).
// There is no RETURNING: SQLite buffers its rows in a temporary table and
// hands them over one step each, for an answer the change count gives in
// the common case (see insertAll).
func insertSQL(n int) string {
	var b strings.Builder
	b.Grow(64 + len(insertCols) + n*28 + 32)
	b.WriteString("INSERT OR ROLLBACK INTO messages ")
	b.WriteString(insertCols)
	b.WriteString(" VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	b.WriteString(" ON CONFLICT(mid_key) DO NOTHING")
	return b.String()
}

// prepareInserts prepares every kept size on db, which must have no
// transaction open (its one connection would be taken).
func prepareInserts(ctx context.Context, db *sql.DB) (*insertStmts, error) {
	s := &insertStmts{byRows: make(map[int]*sql.Stmt, exactInsertRows+len(largerInsertRows))}
	sizes := append([]int{}, largerInsertRows...)
	for n := 1; n <= exactInsertRows; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		st, err := db.PrepareContext(ctx, insertSQL(n))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare insert of %d rows: %w", n, err), s.close())
		}
		s.byRows[n] = st
	}
	return s, nil
}

// next returns how many of n remaining rows the next statement takes.
func (s *insertStmts) next(n int) int {
	if n <= exactInsertRows {
		return n
	}
	for _, k := range largerInsertRows {
		if n >= k {
			return k
		}
	}
	return exactInsertRows
}

func (s *insertStmts) close() error {
	var errs []error
	for _, st := range s.byRows {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}
