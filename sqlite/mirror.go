package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"igmirror/domain"

	"gorm.io/gorm"
)

// liveLeases is the subquery of owners whose lease has not lapsed at the
// bound time (unix milliseconds).
const liveLeases = "(SELECT owner FROM mirror_leases WHERE expires_at > ?)"

// Claim records an attempt on each of ids that is pending (or mirrored:
// an operator's check, which ClaimCandidates handed over in that state)
// and owned by this instance under a live lease, and returns those. The lease is
// checked in the UPDATE's own WHERE: an instance whose lease has lapsed,
// or whose message another instance has taken over, claims nothing.
func (s *Store) Claim(ctx context.Context, ids []int64) ([]domain.Claim, error) {
	var out []domain.Claim
	now := time.Now().UTC()
	err := s.exec(ctx, func(tx *gorm.DB) error {
		out = out[:0]
		me := s.lease.Owner()
		return inChunks(ids, func(part []int64) error {
			args := append([]any{now, me, me, nowMillis()}, int64Args(part)...)
			rows, err := tx.Raw("UPDATE messages SET mirror_attempts = mirror_attempts + 1, mirror_last_attempt_at = ? "+
				"WHERE mirror_status IN ('pending', 'mirrored') AND mirror_owner = ? "+
				"AND EXISTS (SELECT 1 FROM mirror_leases WHERE owner = ? AND expires_at > ?) "+
				"AND id IN ("+placeholders(len(part))+") RETURNING id, mirror_attempts, mirror_status", args...).Rows()
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var c domain.Claim
				var st string
				if err := rows.Scan(&c.ID, &c.Attempts, &st); err != nil {
					return err
				}
				c.Status = domain.MirrorStatus(st)
				out = append(out, c)
			}
			return rows.Err()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("claim messages: %w", err)
	}
	slices.SortFunc(out, func(a, b domain.Claim) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// MarkMirrored records that the CRM holds these messages. It is not
// fenced: the CRM holding the row is a fact, whoever wrote it.
func (s *Store) MarkMirrored(ctx context.Context, ids []int64, degraded map[int64]bool) error {
	now := time.Now().UTC()
	var clean, lossy []int64
	for _, id := range ids {
		if degraded[id] {
			lossy = append(lossy, id)
		} else {
			clean = append(clean, id)
		}
	}
	err := s.exec(ctx, func(tx *gorm.DB) error {
		for _, set := range []struct {
			ids      []int64
			degraded bool
		}{{clean, false}, {lossy, true}} {
			err := inChunks(set.ids, func(part []int64) error {
				return tx.Exec("UPDATE messages SET mirror_status = 'mirrored', mirrored_at = ?, mirror_last_error = '', mirror_degraded = ? WHERE id IN ?",
					now, set.degraded, part).Error
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark mirrored: %w", err)
	}
	return nil
}

// MarkFailed records that the CRM refused these messages, keeping reason,
// for those this instance still owns and that are not mirrored.
func (s *Store) MarkFailed(ctx context.Context, ids []int64, reason string) error {
	if len(reason) > domain.MaxErrorLen {
		reason = domain.TruncateUTF8(reason, domain.MaxErrorLen)
	}
	err := s.exec(ctx, func(tx *gorm.DB) error {
		return inChunks(ids, func(part []int64) error {
			return tx.Exec("UPDATE messages SET mirror_status = 'failed', mirror_last_error = ? WHERE mirror_status = 'pending' AND mirror_owner = ? AND id IN ?",
				reason, s.lease.Owner(), part).Error
		})
	})
	if err != nil {
		return fmt.Errorf("mark failed: %w", err)
	}
	return nil
}

// candidatePart is the condition for one mirror state of a query: SQL
// over messages' columns, and its arguments.
type candidatePart struct {
	cond string
	args []any
}

// parts splits q by mirror state, so that each part walks the mirror
// index in id order (one query ORing the states would read every
// candidate and sort them to find the oldest few). nowMs is the lease
// clock.
func (s *Store) parts(q domain.CandidateQuery, nowMs int64) []candidatePart {
	me := s.lease.Owner()
	// A pending message is free when this instance owns it or its
	// owner's lease has lapsed.
	freePending := candidatePart{"mirror_status = 'pending' AND (mirror_owner = ? OR mirror_owner NOT IN " + liveLeases + ")", []any{me, nowMs}}
	var out []candidatePart
	seen := map[domain.MirrorStatus]bool{}
	for _, st := range q.Statuses {
		if seen[st] {
			continue
		}
		seen[st] = true
		switch {
		case st == domain.MirrorPending:
			out = append(out, freePending)
		case st == domain.MirrorFailed && q.MaxAttempts > 0:
			out = append(out, candidatePart{"mirror_status = 'failed' AND mirror_attempts < ?", []any{q.MaxAttempts}})
		default:
			out = append(out, candidatePart{"mirror_status = ?", []any{string(st)}})
		}
	}
	if seen[domain.MirrorPending] {
		return out
	}
	switch {
	case q.Orphans && !q.StalePendingBefore.IsZero():
		out = append(out, candidatePart{"mirror_status = 'pending' AND ((mirror_owner = ? AND created_at < ?) OR mirror_owner NOT IN " + liveLeases + ")",
			[]any{me, q.StalePendingBefore.UTC(), nowMs}})
	case q.Orphans:
		out = append(out, candidatePart{"mirror_status = 'pending' AND mirror_owner <> ? AND mirror_owner NOT IN " + liveLeases, []any{me, nowMs}})
	case !q.StalePendingBefore.IsZero():
		out = append(out, candidatePart{"mirror_status = 'pending' AND mirror_owner = ? AND created_at < ?", []any{me, q.StalePendingBefore.UTC()}})
	}
	return out
}

// window adds q's time window to a condition.
func window(cond string, args []any, q domain.CandidateQuery) (string, []any) {
	if !q.Since.IsZero() {
		cond, args = cond+" AND timestamp >= ?", append(args, q.Since.UTC())
	}
	if !q.Until.IsZero() {
		cond, args = cond+" AND timestamp < ?", append(args, q.Until.UTC())
	}
	return cond, args
}

// ClaimCandidates takes over, oldest first, up to q.Limit messages that q
// selects and no other instance's live lease covers, in one write of the
// writer: selection and update in one transaction, which SQLite's single
// writer makes atomic against every other process on the file. Dropped,
// failed and disabled ones become pending, mirrored ones stay mirrored
// (an operator's check; Claim takes them so); all become this instance's.
// It returns them as they were before the claim.
func (s *Store) ClaimCandidates(ctx context.Context, q domain.CandidateQuery) ([]domain.Message, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []domain.Message
	err := s.exec(ctx, func(tx *gorm.DB) error {
		sqlTx, ok := tx.Statement.ConnPool.(*sql.Tx)
		if !ok {
			return fmt.Errorf("writer transaction is a %T, not a *sql.Tx", tx.Statement.ConnPool)
		}
		// The transaction's context, not the caller's: the caller may stop
		// waiting, and its context ending must not fail the group commit
		// this step shares with other writes.
		ctx := tx.Statement.Context
		nowMs := nowMillis()
		var ids []int64
		for _, p := range s.parts(q, nowMs) {
			cond, args := window(p.cond, append([]any{}, p.args...), q)
			rows, err := sqlTx.QueryContext(ctx, "SELECT id FROM messages WHERE "+cond+" AND id > ? ORDER BY id LIMIT ?", append(args, q.AfterID, limit)...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		ids = ids[:min(len(ids), limit)]
		if len(ids) == 0 {
			out = nil
			return nil
		}
		// The port returns the messages as they were: a mirrored one
		// tells the mirror to check the CRM rather than send.
		var err error
		if out, err = queryMessagesOn(ctx, sqlTx, "WHERE id IN ("+placeholders(len(ids))+")", int64Args(ids)...); err != nil {
			return err
		}
		// A mirrored one stays mirrored: the CRM holds it, and a check
		// that fails must not leave it looking unsent.
		_, err = sqlTx.ExecContext(ctx, "UPDATE messages SET mirror_owner = ?, mirror_status = CASE mirror_status WHEN 'mirrored' THEN 'mirrored' ELSE 'pending' END WHERE id IN ("+placeholders(len(ids))+")",
			append([]any{s.lease.Owner()}, int64Args(ids)...)...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim mirror candidates: %w", err)
	}
	slices.SortFunc(out, func(a, b domain.Message) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// DeferCandidates marks dropped, and this instance's, every message q
// selects from fromID on that no other instance's live lease covers, so a
// reconciler offers it when a queue has room. A mirrored one keeps its
// state (the CRM holds it; only the check was turned away) and is counted.
func (s *Store) DeferCandidates(ctx context.Context, q domain.CandidateQuery, fromID int64) (int64, error) {
	var n int64
	err := s.exec(ctx, func(tx *gorm.DB) error {
		nowMs := nowMillis()
		var conds []string
		var args []any
		for _, p := range s.parts(q, nowMs) {
			conds, args = append(conds, "("+p.cond+")"), append(args, p.args...)
		}
		if len(conds) == 0 {
			return nil
		}
		cond, args := window("("+strings.Join(conds, " OR ")+") AND id >= ?", append(args, fromID), q)
		res := tx.Exec("UPDATE messages SET mirror_status = 'dropped', mirror_owner = ? WHERE mirror_status <> 'mirrored' AND "+cond,
			append([]any{s.lease.Owner()}, args...)...)
		if res.Error != nil {
			return res.Error
		}
		n = res.RowsAffected
		if !slices.Contains(q.Statuses, domain.MirrorMirrored) {
			return nil
		}
		var kept int64
		if err := tx.Raw("SELECT COUNT(*) FROM messages WHERE mirror_status = 'mirrored' AND "+cond, args...).Scan(&kept).Error; err != nil {
			return err
		}
		n += kept
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("defer mirror candidates: %w", err)
	}
	return n, nil
}
