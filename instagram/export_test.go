package instagram

import "time"

// CacheLen reports how many answers the client holds, for tests of the
// cache bound.
func (c *ProfileClient) CacheLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cache)
}

// SetClock replaces the client's clock, for tests of expiry.
func (c *ProfileClient) SetClock(now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}
