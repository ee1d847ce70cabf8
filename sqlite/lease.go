package sqlite

import (
	"context"
	"time"

	"igmirror/domain"
	"igmirror/internal/renewal"

	"gorm.io/gorm"
)

// The lease is this process's: a row of mirror_leases that it renews
// while it lives (renewal.Lease holds the owner token). The messages it
// stores carry its owner token, and every claim checks in its WHERE that
// the row is unexpired, so a process that can no longer renew (or whose
// messages another took over) claims nothing and sends nothing. The token
// is new for every process, so a restarted instance takes over its
// previous run's pending messages like any other instance's: at once
// after a clean stop (the row is deleted), after the timeout after a
// crash.

// Lease returns this instance's lease.
func (s *Store) Lease() domain.Lease { return s.lease.Domain() }

// nowMillis is the lease clock: this machine's, since only processes on
// this machine can open the file.
func nowMillis() int64 { return time.Now().UnixMilli() }

// renewLease extends the lease by the timeout while it is live, and
// forgets leases that lapsed long ago. A lease that has lapsed is never
// extended: a takeover may already have seen it lapsed, so the process
// goes on under a new owner token, and its earlier messages stay orphans
// for whichever reconciler claims them first (its own included). The
// first call, at open, takes the lease.
func (s *Store) renewLease(ctx context.Context) error {
	now := nowMillis()
	exp := now + s.lease.Timeout.Milliseconds()
	owner, next := s.lease.Owner(), ""
	err := s.exec(ctx, func(tx *gorm.DB) error {
		next = ""
		if s.lease.Taken() {
			res := tx.Exec("UPDATE mirror_leases SET expires_at = ? WHERE owner = ? AND expires_at > ?", exp, owner, now)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 0 {
				next = s.lease.NextOwner()
			}
		}
		if !s.lease.Taken() || next != "" {
			taking := owner
			if next != "" {
				taking = next
			}
			if err := tx.Exec("INSERT INTO mirror_leases (owner, instance_id, expires_at) VALUES (?, ?, ?)",
				taking, s.lease.InstanceID, exp).Error; err != nil {
				return err
			}
		}
		return tx.Exec("DELETE FROM mirror_leases WHERE expires_at < ?", now-time.Hour.Milliseconds()).Error
	})
	if err != nil {
		return err
	}
	if next != "" {
		s.lease.Rotate(next)
		s.log.Warn("mirror lease had lapsed; this instance goes on under a new one, and its earlier unmirrored messages are taken over as orphans",
			"old_owner", owner, "owner", next)
	}
	s.lease.Renewed(time.UnixMilli(exp))
	return nil
}

// keepLease renews the lease three times per timeout until Close.
func (s *Store) keepLease() {
	defer close(s.renewDone)
	period := s.lease.Timeout / 3
	renewal.Run(s.renewStop, period, s.log, s.lease.Owner, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), period)
		defer cancel()
		return s.renewLease(ctx)
	})
}

// releaseLease deletes the lease row (the writer has stopped).
func (s *Store) releaseLease() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.wsql.ExecContext(ctx, "DELETE FROM mirror_leases WHERE owner = ?", s.lease.Owner())
	return err
}
