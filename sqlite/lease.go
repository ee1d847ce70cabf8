package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync/atomic"
	"time"

	"igmirror/domain"
	"igmirror/internal/renewal"

	"gorm.io/gorm"
)

// lease is this process's mirror lease: a row of mirror_leases that the
// process renews while it lives. The messages it stores carry its owner
// token, and every claim checks in its WHERE that the row is unexpired,
// so a process that can no longer renew (or whose messages another took
// over) claims nothing and sends nothing. The token is new for every
// process, so a restarted instance takes over its previous run's pending
// messages like any other instance's: at once after a clean stop (the
// row is deleted), after the timeout after a crash.
type lease struct {
	owner      string
	instanceID string
	timeout    time.Duration
	expires    atomic.Int64 // unix milliseconds of the last renewal's expiry
}

func newLease(instanceID string, timeout time.Duration) lease {
	if instanceID == "" {
		instanceID, _ = os.Hostname()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return lease{owner: instanceID + "/" + hex.EncodeToString(b[:]), instanceID: instanceID, timeout: timeout}
}

// Lease returns this instance's lease.
func (s *Store) Lease() domain.Lease {
	return domain.Lease{Owner: s.lease.owner, InstanceID: s.lease.instanceID, ExpiresAt: time.UnixMilli(s.lease.expires.Load()).UTC()}
}

// nowMillis is the lease clock: this machine's, since only processes on
// this machine can open the file.
func nowMillis() int64 { return time.Now().UnixMilli() }

// renewLease extends the lease by the timeout, and forgets leases that
// lapsed long ago.
func (s *Store) renewLease(ctx context.Context) error {
	now := nowMillis()
	exp := now + s.lease.timeout.Milliseconds()
	err := s.exec(ctx, func(tx *gorm.DB) error {
		if err := tx.Exec("INSERT INTO mirror_leases (owner, instance_id, expires_at) VALUES (?, ?, ?) ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
			s.lease.owner, s.lease.instanceID, exp).Error; err != nil {
			return err
		}
		return tx.Exec("DELETE FROM mirror_leases WHERE expires_at < ?", now-time.Hour.Milliseconds()).Error
	})
	if err == nil {
		s.lease.expires.Store(exp)
	}
	return err
}

// keepLease renews the lease three times per timeout until Close.
func (s *Store) keepLease() {
	defer close(s.renewDone)
	period := s.lease.timeout / 3
	renewal.Run(s.renewStop, period, s.log, s.lease.owner, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), period)
		defer cancel()
		return s.renewLease(ctx)
	})
}

// releaseLease deletes the lease row (the writer has stopped).
func (s *Store) releaseLease() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.wsql.ExecContext(ctx, "DELETE FROM mirror_leases WHERE owner = ?", s.lease.owner)
	return err
}
