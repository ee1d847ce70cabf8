package mirror

import (
	"strings"
	"time"
	"unicode/utf8"
)

// column is what the sink knows of one CRM text column.
type column struct {
	charset  string // utf8mb4, utf8mb3, latin1, ascii ...
	maxChars int    // 0 = no character bound (TEXT)
	maxBytes int    // 0 = no byte bound (VARCHAR counts characters)
}

// defaultColumns is the CRM table of crm_messages.sql on a utf8mb4 server,
// used until the real columns have been read.
var defaultColumns = map[string]column{
	"user_id":  {charset: "utf8mb4", maxChars: 100},
	"username": {charset: "utf8mb4", maxChars: 100},
	"message":  {charset: "utf8mb4", maxBytes: 65535},
}

// The TIMESTAMP column's range.
var (
	minTimestamp = time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)
	maxTimestamp = time.Date(2038, 1, 19, 3, 14, 7, 0, time.UTC)
)

// encodable reports whether charset (lower case) can hold r. Unknown
// charsets are treated as ASCII, which any of them holds.
func encodable(charset string, r rune) bool {
	switch charset {
	case "utf8mb4", "utf16", "utf32", "ucs2":
		return true
	case "utf8", "utf8mb3":
		return r <= 0xFFFF
	case "latin1":
		// MySQL's latin1 is cp1252: 0x80-0x9F hold the euro sign, curly
		// quotes and dashes (common in real text), plus five C1 controls;
		// the other C1 controls have no code and strict mode refuses them.
		return r <= 0x7F || (r >= 0xA0 && r <= 0xFF) || cp1252High[r]
	default:
		return r < 0x80
	}
}

// cp1252High are the characters MySQL's latin1 stores in bytes 0x80-0x9F.
var cp1252High = map[rune]bool{
	'€': true, '‚': true, 'ƒ': true, '„': true, '…': true, '†': true, '‡': true, 'ˆ': true,
	'‰': true, 'Š': true, '‹': true, 'Œ': true, 'Ž': true, '‘': true, '’': true, '“': true,
	'”': true, '•': true, '–': true, '—': true, '˜': true, '™': true, 'š': true, '›': true,
	'œ': true, 'ž': true, 'Ÿ': true,
	'\u0081': true, '\u008d': true, '\u008f': true, '\u0090': true, '\u009d': true,
}

// encodedLen is how many bytes r takes in charset (lower case; for the
// ones we bound).
func encodedLen(charset string, r rune) int {
	switch charset {
	case "utf8mb4", "utf8", "utf8mb3":
		return utf8.RuneLen(r)
	case "utf16", "ucs2":
		if r > 0xFFFF {
			return 4
		}
		return 2
	case "utf32":
		return 4
	default:
		return 1
	}
}

// fitText makes s fit c: characters the charset cannot hold become "?",
// invalid UTF-8 too, and the text is cut at a character boundary to the
// column's bound. It reports whether anything was lost.
func fitText(s string, c column) (string, bool) {
	charset := strings.ToLower(c.charset)
	// Nearly every text fits as it is: the copy is only started at the
	// first character that changes, from the unchanged text before it.
	lossy := false
	var b strings.Builder
	chars, bytes := 0, 0
	for i, r := range s {
		// A RuneError of width 1 is a byte that is not UTF-8; U+FFFD
		// spelled out is a character like any other.
		bad := (r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD")) || !encodable(charset, r)
		if bad {
			r = '?'
		}
		n := encodedLen(charset, r)
		if (c.maxChars > 0 && chars+1 > c.maxChars) || (c.maxBytes > 0 && bytes+n > c.maxBytes) {
			if !lossy {
				b.WriteString(s[:i])
			}
			lossy = true
			break
		}
		if bad && !lossy {
			b.Grow(len(s))
			b.WriteString(s[:i])
			lossy = true
		}
		chars++
		bytes += n
		if lossy {
			b.WriteRune(r)
		}
	}
	if !lossy {
		return s, false
	}
	return b.String(), true
}

// fitRow fits every text column of r and clamps its time to the TIMESTAMP
// range.
func fitRow(r *Row, cols map[string]column) {
	var lost bool
	if r.UserID, lost = fitText(r.UserID, cols["user_id"]); lost {
		r.Degraded = true
	}
	if r.Username, lost = fitText(r.Username, cols["username"]); lost {
		r.Degraded = true
	}
	if r.Message, lost = fitText(r.Message, cols["message"]); lost {
		r.Degraded = true
	}
	switch {
	case r.CreatedAt.Before(minTimestamp):
		r.CreatedAt, r.Degraded = minTimestamp, true
	case r.CreatedAt.After(maxTimestamp):
		r.CreatedAt, r.Degraded = maxTimestamp, true
	}
}

// asciiOnly is the last resort for a row the server still refuses.
var asciiOnly = map[string]column{
	"user_id":  {charset: "ascii", maxChars: 100},
	"username": {charset: "ascii", maxChars: 100},
	"message":  {charset: "ascii", maxBytes: 65535},
}
