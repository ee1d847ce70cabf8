package postgres

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"

	"igmirror/domain"
)

// params collects a statement's arguments and hands out their $n.
type params struct{ v []any }

func (p *params) add(x any) string {
	p.v = append(p.v, x)
	return "$" + strconv.Itoa(len(p.v))
}

// Claim records an attempt on each of ids that is pending (or mirrored:
// an operator's check, which ClaimCandidates handed over in that state)
// and owned by this instance under a live lease, and returns those. The lease is
// checked in the UPDATE's own WHERE, on the database's clock: an instance
// whose lease has lapsed, or whose message another instance has taken
// over (the row lock makes the two UPDATEs take turns, and the second
// re-checks the owner on the row the first wrote), claims nothing.
func (s *Store) Claim(ctx context.Context, ids []int64) ([]domain.Claim, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ids = slices.Clone(ids)
	slices.Sort(ids)
	rows, err := s.db.QueryContext(ctx, "UPDATE messages SET mirror_attempts = mirror_attempts + 1, mirror_last_attempt_at = now() "+
		"WHERE id = ANY($1) AND mirror_status IN ('pending', 'mirrored') AND mirror_owner = $2 "+
		"AND EXISTS (SELECT 1 FROM mirror_leases WHERE owner = $2 AND expires_at > now()) "+
		"RETURNING id, mirror_attempts, mirror_status", ids, s.lease.Owner())
	if err != nil {
		return nil, s.wrap("claim messages", err)
	}
	defer rows.Close()
	var out []domain.Claim
	for rows.Next() {
		var c domain.Claim
		var st string
		if err := rows.Scan(&c.ID, &c.Attempts, &st); err != nil {
			return nil, s.wrap("claim messages", err)
		}
		c.Status = domain.MirrorStatus(st)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("claim messages", err)
	}
	slices.SortFunc(out, func(a, b domain.Claim) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// MarkMirrored records that the CRM holds these messages. It is not
// fenced: the CRM holding the row is a fact, whoever wrote it.
func (s *Store) MarkMirrored(ctx context.Context, ids []int64, degraded map[int64]bool) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ids = slices.Clone(ids)
	slices.Sort(ids)
	lossy := make([]bool, len(ids))
	for i, id := range ids {
		lossy[i] = degraded[id]
	}
	_, err := s.db.ExecContext(ctx, "UPDATE messages m SET mirror_status = 'mirrored', mirrored_at = now(), mirror_last_error = '', mirror_degraded = d.lossy "+
		"FROM unnest($1::bigint[], $2::boolean[]) AS d(id, lossy) WHERE m.id = d.id", ids, lossy)
	if err != nil {
		return s.wrap("mark mirrored", err)
	}
	return nil
}

// MarkFailed records that the CRM refused these messages, keeping reason,
// for those this instance still owns and that are pending.
func (s *Store) MarkFailed(ctx context.Context, ids []int64, reason string) error {
	if len(ids) == 0 {
		return nil
	}
	if len(reason) > domain.MaxErrorLen {
		reason = domain.TruncateUTF8(reason, domain.MaxErrorLen)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ids = slices.Clone(ids)
	slices.Sort(ids)
	_, err := s.db.ExecContext(ctx, "UPDATE messages SET mirror_status = 'failed', mirror_last_error = $1 WHERE id = ANY($2) AND mirror_status = 'pending' AND mirror_owner = $3",
		reason, ids, s.lease.Owner())
	if err != nil {
		return s.wrap("mark failed", err)
	}
	return nil
}

// liveOwner is true when the message aliased a is covered by an
// unexpired lease, on the database's clock.
func liveOwner(a string) string {
	return "EXISTS (SELECT 1 FROM mirror_leases l WHERE l.owner = " + a + ".mirror_owner AND l.expires_at > now())"
}

// parts splits q by mirror state into conditions on the messages aliased
// a, each with q's time window, so that each walks the (mirror_status,
// id) index in id order (one query ORing the states would read every
// candidate and sort them to find the oldest few).
func (s *Store) parts(q domain.CandidateQuery, a string, p *params) []string {
	// The owner token is bound only when a condition uses it: PostgreSQL
	// refuses a parameter that no expression types.
	meArg := ""
	me := func() string {
		if meArg == "" {
			meArg = p.add(s.lease.Owner())
		}
		return meArg
	}
	// A pending message is free when this instance owns it or its
	// owner's lease has lapsed.
	var out []string
	seen := map[domain.MirrorStatus]bool{}
	for _, st := range q.Statuses {
		if seen[st] {
			continue
		}
		seen[st] = true
		switch {
		case st == domain.MirrorPending:
			out = append(out, a+".mirror_status = 'pending' AND ("+a+".mirror_owner = "+me()+" OR NOT "+liveOwner(a)+")")
		case st == domain.MirrorFailed && q.MaxAttempts > 0:
			out = append(out, a+".mirror_status = 'failed' AND "+a+".mirror_attempts < "+p.add(q.MaxAttempts))
		default:
			out = append(out, a+".mirror_status = "+p.add(string(st)))
		}
	}
	if !seen[domain.MirrorPending] {
		switch {
		case q.Orphans && !q.StalePendingBefore.IsZero():
			out = append(out, a+".mirror_status = 'pending' AND (("+a+".mirror_owner = "+me()+" AND "+a+".created_at < "+p.add(q.StalePendingBefore.UTC())+") OR NOT "+liveOwner(a)+")")
		case q.Orphans:
			out = append(out, a+".mirror_status = 'pending' AND "+a+".mirror_owner <> "+me()+" AND NOT "+liveOwner(a))
		case !q.StalePendingBefore.IsZero():
			out = append(out, a+".mirror_status = 'pending' AND "+a+".mirror_owner = "+me()+" AND "+a+".created_at < "+p.add(q.StalePendingBefore.UTC()))
		}
	}
	w := ""
	if !q.Since.IsZero() {
		w += " AND " + a + ".timestamp >= " + p.add(q.Since.UTC())
	}
	if !q.Until.IsZero() {
		w += " AND " + a + ".timestamp < " + p.add(q.Until.UTC())
	}
	for i := range out {
		out[i] = "(" + out[i] + ")" + w
	}
	return out
}

// anyOf ORs conditions.
func anyOf(conds []string) string {
	return "((" + strings.Join(conds, ") OR (") + "))"
}

// ClaimCandidates takes over, oldest first, up to q.Limit messages that q
// selects and no other instance's live lease covers, in one statement:
// each state's oldest few by the index, the first Limit of them locked
// FOR UPDATE SKIP LOCKED (rows another instance is claiming are left to
// it), and the UPDATE re-checks the whole condition on the row it writes,
// so that a message that changed since the statement's snapshot (became
// mirrored, was claimed by another instance) is not taken: a takeover
// never overwrites a message that became mirrored. Dropped, failed and
// disabled ones become pending, mirrored ones stay mirrored (an
// operator's check; Claim takes them so); all become this instance's.
// It returns them as they were before the claim.
func (s *Store) ClaimCandidates(ctx context.Context, q domain.CandidateQuery) ([]domain.Message, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var p params
	me := p.add(s.lease.Owner())
	parts := s.parts(q, "a", &p)
	if len(parts) == 0 {
		return nil, nil
	}
	after, n := p.add(q.AfterID), p.add(limit)
	var pick []string
	for _, c := range parts {
		pick = append(pick, "(SELECT a.id FROM messages a WHERE "+c+" AND a.id > "+after+" ORDER BY a.id LIMIT "+n+")")
	}
	full := anyOf(parts)
	returning := make([]string, 0, len(messageColList))
	for _, c := range messageColList {
		switch c {
		case "mirror_status", "mirror_owner":
			returning = append(returning, "b."+c)
		default:
			returning = append(returning, "a."+c)
		}
	}
	query := "WITH pick AS (" + strings.Join(pick, " UNION ALL ") + "), " +
		"firsts AS (SELECT DISTINCT id FROM pick ORDER BY id LIMIT " + n + "), " +
		"locked AS (SELECT a.id, a.mirror_status, a.mirror_owner FROM messages a WHERE a.id IN (SELECT id FROM firsts) AND " + full +
		" ORDER BY a.id FOR UPDATE SKIP LOCKED) " +
		"UPDATE messages a SET mirror_owner = " + me + ", mirror_status = CASE b.mirror_status WHEN 'mirrored' THEN 'mirrored' ELSE 'pending' END FROM locked b WHERE a.id = b.id AND " + full +
		" RETURNING " + strings.Join(returning, ", ")
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, query, p.v...)
	if err != nil {
		return nil, s.wrap("claim mirror candidates", err)
	}
	out, err := scanMessages(rows)
	if err != nil {
		return nil, s.wrap("claim mirror candidates", err)
	}
	slices.SortFunc(out, func(a, b domain.Message) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// DeferCandidates marks dropped, and this instance's, every message q
// selects from fromID on that no other instance's live lease covers, so a
// reconciler offers it when a queue has room. A mirrored one keeps its
// state (the CRM holds it; only the check was turned away) and is counted.
// The UPDATE's WHERE is the whole condition, so a row that became
// mirrored meanwhile is re-checked on its new version and left alone.
func (s *Store) DeferCandidates(ctx context.Context, q domain.CandidateQuery, fromID int64) (int64, error) {
	where := func(p *params) string {
		parts := s.parts(q, "a", p)
		if len(parts) == 0 {
			return ""
		}
		return anyOf(parts) + " AND a.id >= " + p.add(fromID)
	}
	var p params
	me := p.add(s.lease.Owner())
	cond := where(&p)
	if cond == "" {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.bulkTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, s.wrap("defer mirror candidates", err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, "UPDATE messages a SET mirror_status = 'dropped', mirror_owner = "+me+" WHERE a.mirror_status <> 'mirrored' AND "+cond, p.v...)
	if err != nil {
		return 0, s.wrap("defer mirror candidates", err)
	}
	n, _ := res.RowsAffected()
	if slices.Contains(q.Statuses, domain.MirrorMirrored) {
		var kept int64
		var cp params
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM messages a WHERE a.mirror_status = 'mirrored' AND "+where(&cp), cp.v...).Scan(&kept); err != nil {
			return 0, s.wrap("defer mirror candidates", err)
		}
		n += kept
	}
	if err := tx.Commit(); err != nil {
		return 0, s.wrap("defer mirror candidates", err)
	}
	return n, nil
}
