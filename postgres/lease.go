package postgres

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"igmirror/domain"
	"igmirror/internal/renewal"
)

// The lease is this process's: a row of mirror_leases that it renews
// while it lives (renewal.Lease holds the owner token), with its expiry on
// the database's clock (now() + timeout), so that instances on different
// machines agree on when it lapses. The messages it stores carry its
// owner token, and every claim checks in its WHERE that the row is
// unexpired, so a process that can no longer renew (or whose messages
// another took over) claims nothing and sends nothing. The token is new
// for every process, so a restarted instance takes over its previous
// run's pending messages like any other instance's: at once after a clean
// stop (the row is deleted), after the timeout after a crash.

// Lease returns this instance's lease.
func (s *Store) Lease() domain.Lease { return s.lease.Domain() }

// renewLease extends the lease by the timeout from the database's now()
// while it is live, and forgets leases that lapsed long ago. A lease that
// has lapsed is never extended: a takeover statement may have seen it
// lapsed and be about to lock one of its messages, with the lease table
// read as of that statement's start; reviving the lease would let both
// instances send the message. The process goes on under a new owner
// token instead, and its earlier messages stay orphans for whichever
// reconciler claims them first (its own included). The first call, at
// open, takes the lease.
func (s *Store) renewLease(ctx context.Context) error {
	ms := s.lease.Timeout.Milliseconds()
	owner, next := s.lease.Owner(), ""
	var exp time.Time
	err := s.db.QueryRowContext(ctx, "UPDATE mirror_leases SET expires_at = now() + $2 * interval '1 millisecond' "+
		"WHERE owner = $1 AND expires_at > now() RETURNING expires_at", owner, ms).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		taking := owner
		if s.lease.Taken() {
			next = s.lease.NextOwner()
			taking = next
		}
		err = s.db.QueryRowContext(ctx, "INSERT INTO mirror_leases (owner, instance_id, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond') RETURNING expires_at",
			taking, s.lease.InstanceID, ms).Scan(&exp)
	}
	if err != nil {
		return err
	}
	if next != "" {
		s.lease.Rotate(next)
		s.log.Warn("mirror lease had lapsed; this instance goes on under a new one, and its earlier unmirrored messages are taken over as orphans",
			"old_owner", owner, "owner", next)
	}
	s.lease.Renewed(exp)
	if _, err := s.db.ExecContext(ctx, "DELETE FROM mirror_leases WHERE expires_at < now() - interval '1 hour'"); err != nil {
		return err
	}
	return nil
}

// keepLease renews the lease three times per timeout until Close, and
// folds the state counts' deltas after each renewal that worked.
func (s *Store) keepLease() {
	defer close(s.renewDone)
	period := s.lease.Timeout / 3
	renewal.Run(s.renewStop, period, s.log, s.lease.Owner, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), min(period, s.opTimeout))
		err := s.renewLease(ctx)
		cancel()
		if err != nil {
			return s.scrubbed(err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), s.opTimeout)
		defer cancel()
		if err := s.compactCounts(ctx); err != nil {
			s.log.Warn("fold status count deltas", "err", s.scrubbed(err))
		}
		return nil
	})
}

// releaseLease deletes the lease row (the writer has stopped).
func (s *Store) releaseLease() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
	defer cancel()
	_, err := s.db.ExecContext(ctx, "DELETE FROM mirror_leases WHERE owner = $1", s.lease.Owner())
	return err
}
