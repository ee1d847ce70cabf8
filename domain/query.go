package domain

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// ListFilter selects messages for the admin list. Zero fields do not filter.
type ListFilter struct {
	UserID       string
	Direction    Direction
	MirrorStatus MirrorStatus
	Since, Until time.Time // on Timestamp; Since inclusive, Until exclusive
	Limit        int
	Cursor       string // from a previous page's NextCursor
}

// ErrBadCursor is returned for a cursor this store did not hand out.
var ErrBadCursor = errors.New("bad cursor")

// EncodeCursor makes the opaque cursor that resumes a listing below id.
func EncodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("m:" + strconv.FormatInt(id, 10)))
}

// DecodeCursor reads a cursor made by EncodeCursor.
func DecodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 3 || string(b[:2]) != "m:" {
		return 0, ErrBadCursor
	}
	id, err := strconv.ParseInt(string(b[2:]), 10, 64)
	if err != nil || id < 1 {
		return 0, ErrBadCursor
	}
	return id, nil
}

// List returns one page of messages, newest first, and the cursor of the
// next page ("" when this is the last). Paging goes by id, so messages
// stored while a client pages never shift the pages it has yet to fetch.
func (s *Store) List(ctx context.Context, f ListFilter) ([]Message, string, error) {
	var before int64
	if f.Cursor != "" {
		var err error
		if before, err = DecodeCursor(f.Cursor); err != nil {
			return nil, "", err
		}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	var out []Message
	var err error
	if f.UserID == "" {
		err = listFilters(s.rdb.WithContext(ctx).Model(&Message{}), f, "", before).
			Order("id DESC").Limit(limit + 1).Find(&out).Error
	} else {
		out, err = listByUser(s.rdb.WithContext(ctx), f, before, limit+1)
	}
	if err != nil {
		return nil, "", fmt.Errorf("list messages: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = EncodeCursor(out[len(out)-1].ID)
	}
	return out, next, nil
}

// listFilters adds f's filters but the customer, on columns named with
// prefix, and the cursor's bound (before, 0 for none).
func listFilters(q *gorm.DB, f ListFilter, prefix string, before int64) *gorm.DB {
	if f.Direction != "" {
		q = q.Where(prefix+"direction = ?", f.Direction)
	}
	if f.MirrorStatus != "" {
		q = q.Where(prefix+"mirror_status = ?", f.MirrorStatus)
	}
	if !f.Since.IsZero() {
		q = q.Where(prefix+"timestamp >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		q = q.Where(prefix+"timestamp < ?", f.Until.UTC())
	}
	if before > 0 {
		q = q.Where(prefix+"id < ?", before)
	}
	return q
}

// listByUser returns up to n of a customer's messages, newest first: those
// above user_index's mark by scanning them, then the older ones through
// user_index. One read transaction keeps the mark and the index in step.
func listByUser(db *gorm.DB, f ListFilter, before int64, n int) ([]Message, error) {
	var out []Message
	err := db.Transaction(func(tx *gorm.DB) error {
		mark, err := loadUserIndexMark(tx)
		if err != nil {
			return err
		}
		err = listFilters(tx.Model(&Message{}), f, "", before).
			Where("user_id = ? AND id > ?", f.UserID, mark).
			Order("id DESC").Limit(n).Find(&out).Error
		if err != nil || len(out) >= n {
			return err
		}
		// CROSS JOIN keeps user_index the outer loop: SQLite walks the
		// customer's entries newest first and stops at the limit.
		var older []Message
		q := tx.Table("user_index AS u CROSS JOIN messages").Select("messages.*").
			Where("u.user_id = ? AND u.id <= ? AND messages.id = u.id", f.UserID, mark)
		if before > 0 {
			q = q.Where("u.id < ?", before)
		}
		err = listFilters(q, f, "messages.", 0).Order("u.id DESC").Limit(n - len(out)).Find(&older).Error
		out = append(out, older...)
		return err
	})
	return out, err
}

// Get returns one message by id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (Message, error) {
	var m Message
	err := s.rdb.WithContext(ctx).Where("id = ?", id).Take(&m).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Message{}, ErrNotFound
	}
	if err != nil {
		return Message{}, fmt.Errorf("get message %d: %w", id, err)
	}
	return m, nil
}

// GetByMID returns the message with an Instagram message id, or
// ErrNotFound. The newest mids' keys are in the writer's memory, so the
// look-up runs in the writer's transaction (a small step of a group
// commit) rather than on a reader.
func (s *Store) GetByMID(ctx context.Context, mid string) (Message, error) {
	var m Message
	found := false
	// A miss is an answer, not an error: an error would roll back the
	// whole group commit this step is part of.
	err := s.exec(ctx, func(tx *gorm.DB) error {
		sqlTx, err := sqlTxOf(tx)
		if err != nil {
			return err
		}
		ids, err := s.midIDs(tx.Statement.Context, sqlTx, []string{mid})
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		res := tx.Where("id IN ? AND instagram_message_id = ?", ids, mid).Limit(1).Find(&m)
		found = res.RowsAffected == 1
		return res.Error
	})
	if err != nil {
		return Message{}, fmt.Errorf("get message by mid: %w", err)
	}
	if !found {
		return Message{}, ErrNotFound
	}
	return m, nil
}

// CandidateQuery selects messages to offer to the mirror again.
type CandidateQuery struct {
	Statuses []MirrorStatus
	// MaxAttempts, when above 0, leaves out failed messages that have been
	// tried that many times already. Dropped ones are never left out: the
	// CRM did not refuse them (an operator's resync with a full queue marks
	// even over-tried ones dropped, to be offered when there is room).
	MaxAttempts int
	// StalePendingBefore, when set, adds pending messages stored before it.
	StalePendingBefore time.Time
	Since, Until       time.Time // on Timestamp
	AfterID            int64     // resume after this id (oldest first)
	Limit              int
}

// scope applies the query's conditions (not its paging) to db.
func (cq CandidateQuery) scope(db *gorm.DB) *gorm.DB {
	cond := db.Session(&gorm.Session{NewDB: true}).Where("1 = 0")
	if len(cq.Statuses) > 0 {
		if cq.MaxAttempts > 0 {
			cond = cond.Or("mirror_status IN ? AND (mirror_status <> ? OR mirror_attempts < ?)", cq.Statuses, MirrorFailed, cq.MaxAttempts)
		} else {
			cond = cond.Or("mirror_status IN ?", cq.Statuses)
		}
	}
	if !cq.StalePendingBefore.IsZero() {
		cond = cond.Or("mirror_status = ? AND created_at < ?", MirrorPending, cq.StalePendingBefore.UTC())
	}
	db = db.Where(cond)
	if !cq.Since.IsZero() {
		db = db.Where("timestamp >= ?", cq.Since.UTC())
	}
	if !cq.Until.IsZero() {
		db = db.Where("timestamp < ?", cq.Until.UTC())
	}
	return db
}

// MirrorCandidates returns messages to offer to the mirror, oldest first.
// It asks once per mirror state and merges the answers: each of those
// queries walks the mirror-status index in id order, where one query
// ORing the states would walk the whole table (every mirrored message too)
// or sort every candidate to find the oldest few.
func (s *Store) MirrorCandidates(ctx context.Context, cq CandidateQuery) ([]Message, error) {
	limit := cq.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []Message
	for _, part := range cq.parts() {
		where := []string{"mirror_status = ?", "id > ?"}
		args := []any{string(part.status), cq.AfterID}
		if part.maxAttempts > 0 {
			where, args = append(where, "mirror_attempts < ?"), append(args, part.maxAttempts)
		}
		if !part.createdBefore.IsZero() {
			where, args = append(where, "created_at < ?"), append(args, part.createdBefore.UTC())
		}
		if !cq.Since.IsZero() {
			where, args = append(where, "timestamp >= ?"), append(args, cq.Since.UTC())
		}
		if !cq.Until.IsZero() {
			where, args = append(where, "timestamp < ?"), append(args, cq.Until.UTC())
		}
		got, err := s.queryMessages(ctx, "WHERE "+strings.Join(where, " AND ")+" ORDER BY id ASC LIMIT ?", append(args, limit)...)
		if err != nil {
			return nil, fmt.Errorf("find mirror candidates: %w", err)
		}
		out = append(out, got...)
	}
	slices.SortFunc(out, func(a, b Message) int { return cmp.Compare(a.ID, b.ID) })
	return out[:min(len(out), limit)], nil
}

// candidatePart is the query's condition for one mirror state.
type candidatePart struct {
	status        MirrorStatus
	maxAttempts   int       // failed only: fewer attempts than this
	createdBefore time.Time // stale pending only
}

// parts splits the query by mirror state. A state asked for in Statuses
// is taken whole, so it needs no stale-pending part besides.
func (cq CandidateQuery) parts() []candidatePart {
	var out []candidatePart
	seen := map[MirrorStatus]bool{}
	for _, st := range cq.Statuses {
		if seen[st] {
			continue
		}
		seen[st] = true
		p := candidatePart{status: st}
		if st == MirrorFailed {
			p.maxAttempts = cq.MaxAttempts
		}
		out = append(out, p)
	}
	if !cq.StalePendingBefore.IsZero() && !seen[MirrorPending] {
		out = append(out, candidatePart{status: MirrorPending, createdBefore: cq.StalePendingBefore})
	}
	return out
}

// DeferCandidates marks every message the query selects from id fromID on
// as dropped, so that the reconciler offers it when the queue has room. A
// message already mirrored keeps its state: the CRM holds it, and only
// the check an operator asked for was turned away. It returns how many
// messages it turned away, the mirrored ones included.
func (s *Store) DeferCandidates(ctx context.Context, cq CandidateQuery, fromID int64) (int64, error) {
	var n int64
	err := s.exec(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&Message{}).Scopes(cq.scope).Where("id >= ? AND mirror_status <> ?", fromID, MirrorMirrored).
			Update("mirror_status", MirrorDropped)
		if res.Error != nil {
			return fmt.Errorf("defer mirror candidates: %w", res.Error)
		}
		n = res.RowsAffected
		if !slices.Contains(cq.Statuses, MirrorMirrored) {
			return nil
		}
		var kept int64
		if err := tx.Model(&Message{}).Scopes(cq.scope).Where("id >= ? AND mirror_status = ?", fromID, MirrorMirrored).
			Count(&kept).Error; err != nil {
			return fmt.Errorf("count mirrored candidates: %w", err)
		}
		n += kept
		return nil
	})
	return n, err
}

// CountByStatus returns how many messages are in each mirror state, from
// the counts the writer keeps (statuscounts.go).
func (s *Store) CountByStatus(ctx context.Context) (map[MirrorStatus]int64, error) {
	var rows []struct {
		MirrorStatus MirrorStatus
		N            int64
	}
	err := s.rdb.WithContext(ctx).Raw("SELECT status AS mirror_status, n FROM status_counts").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("count by mirror status: %w", err)
	}
	out := map[MirrorStatus]int64{
		MirrorPending: 0, MirrorMirrored: 0, MirrorDropped: 0, MirrorFailed: 0, MirrorDisabled: 0,
	}
	for _, r := range rows {
		out[r.MirrorStatus] = r.N
	}
	return out, nil
}

// MirrorState is a message's mirror progress, read fresh.
type MirrorState struct {
	ID       int64
	Status   MirrorStatus
	Attempts int
}

// MirrorStates reads the current mirror state of the given messages.
func (s *Store) MirrorStates(ctx context.Context, ids []int64) (map[int64]MirrorState, error) {
	out := make(map[int64]MirrorState, len(ids))
	err := inChunks(ids, func(part []int64) error {
		rows, err := s.rsql.QueryContext(ctx, "SELECT id, mirror_status, mirror_attempts FROM messages WHERE id IN ("+placeholders(len(part))+")", int64Args(part)...)
		if err != nil {
			return fmt.Errorf("read mirror states: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var st MirrorState
			var status string
			if err := rows.Scan(&st.ID, &status, &st.Attempts); err != nil {
				return fmt.Errorf("read mirror states: %w", err)
			}
			st.Status = MirrorStatus(status)
			out[st.ID] = st
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read mirror states: %w", err)
		}
		return nil
	})
	return out, err
}
