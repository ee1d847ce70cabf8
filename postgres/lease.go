package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync/atomic"
	"time"

	"igmirror/domain"
	"igmirror/internal/renewal"
)

// lease is this process's mirror lease: a row of mirror_leases that the
// process renews while it lives, with its expiry on the database's clock
// (now() + timeout), so that instances on different machines agree on
// when it lapses. The messages it stores carry its owner token, and every
// claim checks in its WHERE that the row is unexpired, so a process that
// can no longer renew (or whose messages another took over) claims
// nothing and sends nothing. The token is new for every process, so a
// restarted instance takes over its previous run's pending messages like
// any other instance's: at once after a clean stop (the row is deleted),
// after the timeout after a crash.
type lease struct {
	owner      string
	instanceID string
	timeout    time.Duration
	expires    atomic.Int64 // unix microseconds of the last renewal's expiry
}

func newLease(instanceID string, timeout time.Duration) *lease {
	if instanceID == "" {
		instanceID, _ = os.Hostname()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &lease{owner: instanceID + "/" + hex.EncodeToString(b[:]), instanceID: instanceID, timeout: timeout}
}

// Lease returns this instance's lease.
func (s *Store) Lease() domain.Lease {
	return domain.Lease{Owner: s.lease.owner, InstanceID: s.lease.instanceID, ExpiresAt: time.UnixMicro(s.lease.expires.Load()).UTC()}
}

// renewLease extends the lease by the timeout from the database's now(),
// and forgets leases that lapsed long ago.
func (s *Store) renewLease(ctx context.Context) error {
	ms := s.lease.timeout.Milliseconds()
	var exp time.Time
	err := s.db.QueryRowContext(ctx, "INSERT INTO mirror_leases (owner, instance_id, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond') "+
		"ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at RETURNING expires_at",
		s.lease.owner, s.lease.instanceID, ms).Scan(&exp)
	if err != nil {
		return err
	}
	s.lease.expires.Store(exp.UnixMicro())
	if _, err := s.db.ExecContext(ctx, "DELETE FROM mirror_leases WHERE expires_at < now() - interval '1 hour'"); err != nil {
		return err
	}
	return nil
}

// keepLease renews the lease three times per timeout until Close, and
// folds the state counts' deltas after each renewal that worked.
func (s *Store) keepLease() {
	defer close(s.renewDone)
	period := s.lease.timeout / 3
	renewal.Run(s.renewStop, period, s.log, s.lease.owner, func() error {
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
	_, err := s.db.ExecContext(ctx, "DELETE FROM mirror_leases WHERE owner = $1", s.lease.owner)
	return err
}
