package instagram

import "time"

// cached returns userID's live cache entry, dropping it when expired.
func (c *ProfileClient) cached(userID string) (profileEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[userID]
	if !ok {
		return profileEntry{}, false
	}
	if !c.now().Before(e.expires) {
		delete(c.cache, userID)
		return profileEntry{}, false
	}
	return e, true
}

// store caches an answer for ttl, evicting one entry first when the cache
// is full so that memory stays bounded by MaxEntries.
func (c *ProfileClient) store(userID, username string, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.cache[userID]; !ok && len(c.cache) >= c.maxEntries {
		c.evictLocked(now)
	}
	c.cache[userID] = profileEntry{username: username, expires: now.Add(ttl)}
}

// evictLocked removes one entry. Map iteration starts at a random place,
// so the first few entries are a random sample: an expired one among them
// goes, else the first seen. That is O(1) per insert where an LRU would
// need a list, and for a cache of usernames random eviction loses little.
func (c *ProfileClient) evictLocked(now time.Time) {
	victim, seen := "", 0
	for id, e := range c.cache {
		if seen == 0 {
			victim = id
		}
		if !now.Before(e.expires) {
			victim = id
			break
		}
		if seen++; seen >= evictSample {
			break
		}
	}
	delete(c.cache, victim)
}
