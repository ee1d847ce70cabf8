// Package renewal holds what both store adapters need of a store
// instance's mirror lease: the loop that renews it three times per
// timeout, with one log line when renewing starts to fail and one when it
// works again rather than one per attempt, and the owner token the
// process writes into its statements.
package renewal

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"igmirror/domain"
)

// Run calls renew every period until stop is closed. renew's error is
// logged as it is, so it must carry no secret. owner names the lease in
// the log lines.
func Run(stop <-chan struct{}, period time.Duration, log *slog.Logger, owner func() string, renew func() error) {
	t := time.NewTicker(period)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		err := renew()
		switch {
		case err != nil && !failing:
			failing = true
			log.Warn("mirror lease not renewed; once it lapses this instance mirrors nothing and others take its messages over", "owner", owner(), "err", err)
		case err == nil && failing:
			failing = false
			log.Info("mirror lease renewed again", "owner", owner())
		}
	}
}

// Lease is a process's mirror lease as the process knows it: the owner
// token written on the messages it stores, and the expiry of its last
// renewal. The database holds the lease itself (a row that claims check
// in their WHERE); this is only what the process must write into its
// statements. A lease that has lapsed is never extended: the process
// takes a new token (Rotate), so that the messages of the old one stay
// orphans that any instance may take over, instead of coming back under a
// lease that a takeover, already under way, saw lapsed.
type Lease struct {
	InstanceID string
	Timeout    time.Duration
	owner      atomic.Pointer[string]
	expires    atomic.Int64 // unix microseconds of the last renewal's expiry
}

// NewLease returns a lease with a fresh owner token for instanceID (the
// host name when empty).
func NewLease(instanceID string, timeout time.Duration) *Lease {
	if instanceID == "" {
		instanceID, _ = os.Hostname()
	}
	l := &Lease{InstanceID: instanceID, Timeout: timeout}
	o := l.NextOwner()
	l.owner.Store(&o)
	return l
}

// Owner is the current owner token.
func (l *Lease) Owner() string { return *l.owner.Load() }

// NextOwner mints a new owner token, INSTANCE_ID/<12 hex digits>; it
// becomes the lease's only once Rotate is called with it.
func (l *Lease) NextOwner() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return l.InstanceID + "/" + hex.EncodeToString(b[:])
}

// Rotate makes owner (from NextOwner, its row committed) the current token.
func (l *Lease) Rotate(owner string) { l.owner.Store(&owner) }

// Renewed records the expiry of a renewal.
func (l *Lease) Renewed(until time.Time) { l.expires.Store(until.UnixMicro()) }

// Domain is the lease as the port describes it.
func (l *Lease) Domain() domain.Lease {
	return domain.Lease{Owner: l.Owner(), InstanceID: l.InstanceID, ExpiresAt: time.UnixMicro(l.expires.Load()).UTC()}
}

// Taken reports whether the lease was ever renewed (taken at open).
func (l *Lease) Taken() bool { return l.expires.Load() != 0 }
