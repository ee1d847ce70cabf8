package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"igmirror/domain"
)

// lagSource is what the mirror-lag gauge needs of the store: when the
// oldest message the CRM does not hold yet (pending, dropped or failed)
// was stored, and false when there is none.
type lagSource interface {
	OldestUnmirrored(ctx context.Context) (t time.Time, ok bool, err error)
}

// statusCounter is what the per-state message gauge needs of the store.
type statusCounter interface {
	CountByStatus(ctx context.Context) (map[domain.MirrorStatus]int64, error)
}

// How gauges read from the store at scrape time: each read is bounded by
// scrapeReadTimeout and its answer reused for scrapeCacheTTL, so that
// several Prometheus servers, or a storm of curls, cost the store one
// query per gauge every few seconds.
const (
	scrapeReadTimeout = time.Second
	scrapeCacheTTL    = 2 * time.Second
	// scrapeErrorLogEvery bounds how often a failing read is logged: a
	// scrape every 15 s would otherwise log the same outage four times a
	// minute per gauge.
	scrapeErrorLogEvery = time.Minute
)

// cachedRead is a value read from the store at most once per ttl. A read
// that fails keeps the last good value (the zero value before one) and is
// logged at most once per scrapeErrorLogEvery. Readers wait for a read in
// progress rather than starting their own.
type cachedRead[T any] struct {
	what    string // for the log line
	read    func(ctx context.Context) (T, error)
	ttl     time.Duration
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger

	mu        sync.Mutex
	at        time.Time // when read last ran, whatever its outcome; zero = never
	val       T
	errLogged time.Time
}

func newCachedRead[T any](what string, log *slog.Logger, read func(ctx context.Context) (T, error)) *cachedRead[T] {
	return &cachedRead[T]{what: what, read: read, ttl: scrapeCacheTTL, timeout: scrapeReadTimeout, now: time.Now, log: log}
}

// get returns the cached value, reading it again when it is older than
// ttl, and the time the value is for.
func (c *cachedRead[T]) get() (T, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.at.IsZero() || now.Sub(c.at) >= c.ttl || now.Before(c.at) {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		v, err := c.read(ctx)
		cancel()
		c.at = now
		if err != nil {
			if c.errLogged.IsZero() || now.Sub(c.errLogged) >= scrapeErrorLogEvery {
				c.errLogged = now
				c.log.Warn("metrics: store read failed; the gauge keeps its last value", "gauge", c.what, "err", err)
			}
		} else {
			c.val = v
		}
	}
	return c.val, now
}

// set records a value read elsewhere (by /readyz), so that the next
// scrape within ttl need not read it again.
func (c *cachedRead[T]) set(v T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.val = c.now(), v
}

// oldestUnmirrored is a lagSource's answer.
type oldestUnmirrored struct {
	at time.Time
	ok bool
}

// newLagGauge returns the function behind igmirror_mirror_lag_seconds:
// the age of the oldest unmirrored message, 0 when there is none. The
// message's time is what is cached, not the age: between two reads, and
// while the store cannot be read, the lag keeps growing as it really does.
func newLagGauge(src lagSource, log *slog.Logger) (*cachedRead[oldestUnmirrored], func() float64) {
	c := newCachedRead("mirror_lag_seconds", log, func(ctx context.Context) (oldestUnmirrored, error) {
		at, ok, err := src.OldestUnmirrored(ctx)
		return oldestUnmirrored{at: at, ok: ok}, err
	})
	return c, func() float64 {
		o, now := c.get()
		if !o.ok {
			return 0
		}
		return max(0, now.Sub(o.at).Seconds())
	}
}
