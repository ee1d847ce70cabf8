package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// insertCols are the columns a new message is inserted with; the rest
// take their defaults.
const insertCols = "(instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at, mirror_status, user_id, attachments, reply_to_mid, standby, mirror_owner)"

const colsPerRow = 13

// rowsPerStmt keeps each statement well under SQLite's bound-variable limit.
const rowsPerStmt = 400

// exactInsertRows is up to how many rows a statement of exactly that size
// is kept: group commits of single-message deliveries are mostly this small.
const exactInsertRows = 16

// largerInsertRows are the sizes kept above it, largest first; a batch
// is cut into statements of these sizes (and one exact remainder).
var largerInsertRows = []int{rowsPerStmt, 256, 128, 64, 32}

// sizedStmts holds one of the writer's statements over a list of rows,
// prepared once at open for each kept size: preparing a statement of a
// few hundred placeholders cost as much as running it, on every commit.
// Only the writer goroutine uses them (through its transaction), so no
// lock.
type sizedStmts struct {
	byRows map[int]*sql.Stmt
}

// insertSQL is the INSERT of n messages. The UNIQUE constraint decides
// which are new: a mid already stored, or earlier in the same statement,
// is skipped, and RETURNING names the rows actually inserted.
func insertSQL(n int) string {
	return valuesSQL("INSERT INTO messages "+insertCols+" VALUES ", "(?,?,?,?,?,?,?,?,?,?,?,?,?)", n) +
		" ON CONFLICT (instagram_message_id) DO NOTHING RETURNING id, instagram_message_id"
}

// valuesSQL is head followed by n copies of row, comma-separated.
func valuesSQL(head, row string, n int) string {
	var b strings.Builder
	b.Grow(len(head) + n*(len(row)+1))
	b.WriteString(head)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

// prepareSized prepares build(n) for every kept size on db, which must
// have no transaction open (its one connection would be taken).
func prepareSized(ctx context.Context, db *sql.DB, what string, build func(n int) string) (*sizedStmts, error) {
	s := &sizedStmts{byRows: make(map[int]*sql.Stmt, exactInsertRows+len(largerInsertRows))}
	sizes := append([]int{}, largerInsertRows...)
	for n := 1; n <= exactInsertRows; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		st, err := db.PrepareContext(ctx, build(n))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare %s of %d rows: %w", what, n, err), s.close())
		}
		s.byRows[n] = st
	}
	return s, nil
}

// next returns how many of n remaining rows the next statement takes.
func (s *sizedStmts) next(n int) int {
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

// eachSized cuts items into runs of kept sizes and calls fn with each run and
// its statement.
func eachSized[T any](s *sizedStmts, items []T, fn func(part []T, st *sql.Stmt) error) error {
	for len(items) > 0 {
		k := s.next(len(items))
		if err := fn(items[:k], s.byRows[k]); err != nil {
			return err
		}
		items = items[k:]
	}
	return nil
}

func (s *sizedStmts) close() error {
	if s == nil {
		return nil
	}
	var errs []error
	for _, st := range s.byRows {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}
