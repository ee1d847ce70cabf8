package faultproxy

import "time"

// Clock is where a Proxy reads the time and waits out the latency it adds.
// The system clock is the default; a test passes its own with WithClock to
// see a delay held and released without sleeping through it.
type Clock interface {
	Now() time.Time
	// After sends the time on the returned channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Option configures a Proxy at New.
type Option func(*Proxy)

// WithClock makes the proxy time its latency by c instead of the system
// clock. Timeouts of its own (dialling the target, backing off after an
// accept error) stay on the system clock.
func WithClock(c Clock) Option {
	return func(p *Proxy) { p.clock = c }
}

// systemClock is the Clock of time.Now and time.After.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
