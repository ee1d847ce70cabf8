package main

import (
	"sync"
	"time"
)

// maxLoggedNames bounds how many distinct unknown names, and how many
// distinct invalid reasons, a process logs.
const maxLoggedNames = 100

// rejectionCapacity is how many refused webhook POSTs the admin API can
// show: enough to see a pattern (a wrong secret, a scanner), small enough
// that a flood of refusals costs a fixed few KiB.
const rejectionCapacity = 100

// Reasons a webhook POST is refused, as GET /admin/deliveries/rejected
// shows them. Each maps to one outcome of the deliveries counter
// (rejectionOutcome), so the counter counts them by reason.
const (
	rejectNotConfigured    = "not_configured"    // no app secret and unsigned POSTs not allowed
	rejectTooLarge         = "too_large"         // over HTTP_MAX_BODY_BYTES
	rejectUnreadable       = "unreadable_body"   // the body could not be read (the client went away)
	rejectMissingSignature = "missing_signature" // no X-Hub-Signature-256
	rejectBadSignature     = "bad_signature"     // X-Hub-Signature-256 does not match the body
	rejectMalformed        = "malformed"         // authentic, but not an Instagram delivery
)

// rejectionOutcome maps each rejection reason to its outcome label.
var rejectionOutcome = map[string]string{
	rejectNotConfigured:    deliveryUnsignedDeny,
	rejectTooLarge:         deliveryTooLarge,
	rejectUnreadable:       deliveryBadRequest,
	rejectMissingSignature: deliveryUnauthorized,
	rejectBadSignature:     deliveryForbidden,
	rejectMalformed:        deliveryBadRequest,
}

// rejection is one refused webhook POST. It holds no byte of the body:
// a refused body is unauthenticated (or not a delivery), and may be
// anyone's words or an attacker's payload.
type rejection struct {
	At     time.Time `json:"at"`
	Peer   string    `json:"peer"`   // the TCP peer's address, never a forwarded-for header
	Reason string    `json:"reason"` // one of the reject* constants
	// Size is the bytes of body read, or, when the body was not read
	// (not_configured, too_large), its declared Content-Length; -1 when
	// neither is known.
	Size int64 `json:"size"`
}

// rejections keeps the last refused POSTs in a fixed ring: memory is
// bounded whatever the rate of refusals, and the oldest is evicted first.
// It is safe for concurrent use.
type rejections struct {
	mu   sync.Mutex
	ring []rejection // fixed length: the capacity
	next int         // where the next one goes
	n    int         // how many are held, up to len(ring)
}

func newRejections(capacity int) *rejections {
	return &rejections{ring: make([]rejection, capacity)}
}

// add records r, evicting the oldest when the ring is full.
func (rs *rejections) add(r rejection) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.ring[rs.next] = r
	rs.next = (rs.next + 1) % len(rs.ring)
	if rs.n < len(rs.ring) {
		rs.n++
	}
}

// list returns the held rejections, newest first, as a copy.
func (rs *rejections) list() []rejection {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]rejection, 0, rs.n)
	for i := 1; i <= rs.n; i++ {
		out = append(out, rs.ring[(rs.next-i+len(rs.ring))%len(rs.ring)])
	}
	return out
}

// capacity is how many rejections the ring holds at most.
func (rs *rejections) capacity() int { return len(rs.ring) }

// seenOnce remembers up to max distinct names, so that a name is logged
// the first time this process sees it and never again: an unknown item
// kind Meta sends on every delivery must not flood the log. Once max
// names are held, further new names are not logged at all, which bounds
// both the memory and the log lines. It is safe for concurrent use.
type seenOnce struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

func newSeenOnce(max int) *seenOnce {
	return &seenOnce{max: max, seen: make(map[string]struct{})}
}

// first reports whether name is new and was remembered now.
func (s *seenOnce) first(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[name]; ok || len(s.seen) >= s.max {
		return false
	}
	s.seen[name] = struct{}{}
	return true
}
