package instagram

import (
	"strconv"
	"time"
)

// The wire types mirror the parts of Meta's webhook delivery that Parse
// reads; encoding/json skips everything else without allocating for it.

type wireDelivery struct {
	Object string       `json:"object"`
	Entry  *[]wireEntry `json:"entry"`
}

type wireEntry struct {
	Messaging []wireItem `json:"messaging"`
	Standby   []wireItem `json:"standby"`
	Changes   []presence `json:"changes"`
}

type wireItem struct {
	Sender      wireID       `json:"sender"`
	Recipient   wireID       `json:"recipient"`
	Timestamp   unixTime     `json:"timestamp"`
	Message     *wireMessage `json:"message"`
	Reaction    presence     `json:"reaction"`
	Read        presence     `json:"read"`
	Postback    presence     `json:"postback"`
	Referral    presence     `json:"referral"`
	MessageEdit *wireEdit    `json:"message_edit"`
}

type wireEdit struct {
	MID     string `json:"mid"`
	Text    string `json:"text"`
	NumEdit int    `json:"num_edit"`
}

type wireID struct {
	ID string `json:"id"`
}

type wireMessage struct {
	MID       string `json:"mid"`
	Text      string `json:"text"`
	IsEcho    bool   `json:"is_echo"`
	IsDeleted bool   `json:"is_deleted"`
	// IsUnsupported marks a message of a kind the API does not expose
	// (Meta sends only its mid).
	IsUnsupported bool             `json:"is_unsupported"`
	Attachments   []wireAttachment `json:"attachments"`
	ReplyTo       struct {
		MID string `json:"mid"`
	} `json:"reply_to"`
}

type wireAttachment struct {
	Type    string `json:"type"`
	Payload struct {
		URL string `json:"url"`
	} `json:"payload"`
}

// presence records whether a field held a non-null value. Its decoder only
// looks at the first byte, so the kinds Parse merely counts cost nothing
// to decode and can never make a delivery malformed.
type presence bool

// UnmarshalJSON implements json.Unmarshaler.
func (p *presence) UnmarshalJSON(b []byte) error {
	*p = len(b) > 0 && b[0] != 'n'
	return nil
}

// unixTime is a Meta timestamp: a JSON number or numeric string of seconds
// or milliseconds since the epoch, or an ISO 8601 / RFC 3339 string such
// as "2021-09-08T06:34:04.000Z" (the form Chatwoot's fixtures and some
// relays write). Decoding never fails, because a bad timestamp must not
// refuse the delivery; ok says whether the value was usable.
type unixTime struct {
	t  time.Time
	ok bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (u *unixTime) UnmarshalJSON(b []byte) error {
	*u = unixTime{}
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	if ms, ok := parseUnixMillis(b); ok {
		u.t, u.ok = time.UnixMilli(ms).UTC(), true
	} else if t, ok := parseISOTime(b); ok {
		u.t, u.ok = t, true
	}
	return nil
}

// isoLayouts are the ISO 8601 forms a timestamp may take: RFC 3339, and
// the offset without a colon ("+0000") that Graph API fields use. Parsing
// accepts a fractional second after the seconds in both.
var isoLayouts = [...]string{time.RFC3339, "2006-01-02T15:04:05Z0700"}

// parseISOTime reads an ISO 8601 date-time with a zone, within the range
// a stored timestamp may take (after the epoch, before the year 10000).
func parseISOTime(b []byte) (time.Time, bool) {
	// The shortest form is 2006-01-02T15:04:05Z; the cap keeps junk cheap.
	if len(b) < 20 || len(b) > 40 || b[4] != '-' {
		return time.Time{}, false
	}
	s := string(b)
	for _, layout := range isoLayouts {
		t, err := time.Parse(layout, s)
		if err != nil {
			continue
		}
		ms := t.UnixMilli()
		if ms <= 0 || ms > maxUnixMillis {
			return time.Time{}, false
		}
		return time.UnixMilli(ms).UTC(), true
	}
	return time.Time{}, false
}

const (
	// secondsBelow separates the two units: 1e11 seconds is the year 5138,
	// 1e11 milliseconds is 1973, so no real timestamp is ambiguous.
	secondsBelow = 1e11
	// maxUnixMillis is 9999-12-31T23:59:59.999Z, the last instant RFC 3339
	// and SQLite can hold.
	maxUnixMillis = 253402300799999
)

// parseUnixMillis reads a positive count of seconds or milliseconds and
// returns milliseconds.
func parseUnixMillis(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 32 {
		return 0, false
	}
	var n int64
	for i, c := range b {
		if c < '0' || c > '9' {
			return parseUnixMillisFloat(b[i:], b)
		}
		if n > maxUnixMillis {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n < secondsBelow {
		n *= 1000
	}
	return n, n > 0 && n <= maxUnixMillis
}

// parseUnixMillisFloat handles the rare fractional or exponent form; rest
// is the part of b from the first non-digit on.
func parseUnixMillisFloat(rest, b []byte) (int64, bool) {
	for _, c := range rest {
		switch {
		case c >= '0' && c <= '9', c == '.', c == 'e', c == 'E', c == '+', c == '-':
		default:
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || !(f > 0) {
		return 0, false
	}
	if f < secondsBelow {
		f *= 1000
	}
	if f > maxUnixMillis {
		return 0, false
	}
	ms := int64(f)
	return ms, ms > 0
}
