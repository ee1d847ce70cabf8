package instagram

import (
	"bytes"
	"encoding/json"

	"igmirror/domain"
)

// Delivery.Unknown is filled by a scan of the raw body after it decoded:
// encoding/json skips keys a struct does not name without telling, so
// the keys themselves have to be read. The scan runs only on bodies the
// decoder accepted (valid JSON), reads each byte once, skips strings with
// bytes.IndexByte and allocates nothing unless it finds an unknown name.

// Bounds on what one delivery adds to Delivery.Unknown.
const (
	maxUnknown  = 32 // names per delivery
	maxNameLen  = 64 // bytes per name
	prefixEntry = "entry."
)

// noKind names an item with no kind at all.
var noKind = []byte("(no kind)")

// The keys Parse reads. encoding/json matches keys case-insensitively,
// and so does the scan.
var (
	knownEntryKeys = [...]string{"id", "time", "messaging", "standby", "changes"}
	itemFieldKeys  = [...]string{"sender", "recipient", "timestamp"}
	itemKindKeys   = [...]string{"message", "reaction", "read", "postback", "referral", "message_edit"}
)

// unknownNames scans body for entry keys and item kinds Parse does not
// know: each unknown entry key is counted as Other (an item of a kind
// without a name is already counted by item) and every such name is
// listed once in Unknown.
//
// A key given twice in one object is decoded from its last occurrence,
// so what a list or entry array yields is kept pending until the object
// ends, and a later occurrence of the same key replaces it.
func (p *parser) unknownNames(body []byte) {
	// Parse counted every item of no kind it knows as Other: with none,
	// there is no item to name, and only the entries' keys are scanned
	// (a delivery of known kinds, on the webhook's path, skips its items).
	s := keyScanner{b: body, d: p.d, spoilt: p.spoilt, itemsKnown: p.d.Counts.Other == 0}
	s.ws()
	s.object(func(key []byte) {
		if keyIs(key, "entry") {
			s.pending, s.pendingOther, s.entryIndex = s.pending[:0], 0, -1
			s.array(s.entry)
			return
		}
		s.skip()
	})
	p.d.Counts.Other += s.pendingOther
	for _, n := range s.pending {
		s.unknown(n.prefix, n.key)
	}
}

// pendingName is an unknown name found but not yet kept.
type pendingName struct {
	prefix string
	key    []byte
}

// unknown adds prefix+key to d.Unknown, once, within the bounds.
func (s *keyScanner) unknown(prefix string, key []byte) {
	d := s.d
	if len(d.Unknown) >= maxUnknown {
		return
	}
	name := string(key)
	if bytes.IndexByte(key, '\\') >= 0 {
		// An escaped key; its decoded form is what a reader recognises.
		var s string
		if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &s) == nil {
			name = s
		}
	}
	name = prefix + domain.TruncateUTF8(name, maxNameLen)
	for _, n := range d.Unknown {
		if n == name {
			return
		}
	}
	d.Unknown = append(d.Unknown, name)
}

// keyScanner walks a JSON text the decoder has already accepted. Every
// step is bounds-checked and makes progress, so that even a text it was
// not meant for cannot make it panic or loop.
type keyScanner struct {
	b []byte
	i int
	d *Delivery // the Parse's delivery, which the scan adds to
	// spoilt are the items counted invalid, not to be named; entryIndex
	// is the entry being scanned.
	spoilt     map[itemPos]struct{}
	entryIndex int
	itemsKnown bool // every item has a kind Parse knows: items need no naming

	pending      []pendingName    // of the entry array being scanned
	pendingOther int              // its unknown entry keys
	items        [2][]pendingName // of the entry's messaging and standby lists
}

func (s *keyScanner) entry() {
	s.entryIndex++
	if s.peek() != '{' {
		s.skip()
		return
	}
	s.items[0], s.items[1] = s.items[0][:0], s.items[1][:0]
	s.object(func(key []byte) {
		switch {
		case s.itemsKnown && (keyIs(key, "messaging") || keyIs(key, "standby")):
			s.skip()
		case keyIs(key, "messaging"):
			s.items[0] = s.items[0][:0]
			j := 0
			s.array(func() { s.item(0, "messaging.", itemPos{s.entryIndex, false, j}); j++ })
		case keyIs(key, "standby"):
			s.items[1] = s.items[1][:0]
			j := 0
			s.array(func() { s.item(1, "standby.", itemPos{s.entryIndex, true, j}); j++ })
		case keyIn(key, knownEntryKeys[:]):
			s.skip()
		default:
			s.pendingOther++
			s.pending = append(s.pending, pendingName{prefixEntry, key})
			s.skip()
		}
	})
	s.pending = append(append(s.pending, s.items[0]...), s.items[1]...)
}

// item names the item at pos if it has no kind Parse knows: by its other
// keys, or as "(no kind)" when it has none (null, {}, or only a null
// kind).
func (s *keyScanner) item(list int, prefix string, pos itemPos) {
	if _, ok := s.spoilt[pos]; ok {
		s.skip()
		return
	}
	switch s.peek() {
	case 'n':
		s.skip()
		s.items[list] = append(s.items[list], pendingName{prefix, noKind})
		return
	case '{':
	default:
		// Not an object: the decoder refused it, and it is counted invalid.
		s.skip()
		return
	}
	var other [4][]byte
	n, kind := 0, false
	s.object(func(key []byte) {
		switch {
		case keyIn(key, itemKindKeys[:]):
			// A null kind decodes as absent, so it names nothing.
			kind = kind || s.peek() != 'n'
		case keyIn(key, itemFieldKeys[:]):
		default:
			if n < len(other) {
				other[n] = key
				n++
			}
		}
		s.skip()
	})
	if kind {
		return
	}
	if n == 0 {
		s.items[list] = append(s.items[list], pendingName{prefix, noKind})
		return
	}
	for _, key := range other[:n] {
		s.items[list] = append(s.items[list], pendingName{prefix, key})
	}
}

func (s *keyScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *keyScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// object calls member with each key of the object at s.i, the scan at
// the member's value, which member consumes.
func (s *keyScanner) object(member func(key []byte)) {
	if s.peek() != '{' {
		s.skip()
		return
	}
	s.i++
	for s.i < len(s.b) {
		s.ws()
		switch s.peek() {
		case '}':
			s.i++
			return
		case '"':
		default:
			s.i++ // a comma
			continue
		}
		key := s.str()
		s.ws()
		if s.peek() == ':' {
			s.i++
		}
		s.ws()
		start := s.i
		member(key)
		s.progress(start)
	}
}

// array calls elem for each element of the array at s.i, the scan at the
// element, which elem consumes.
func (s *keyScanner) array(elem func()) {
	if s.peek() != '[' {
		s.skip()
		return
	}
	s.i++
	for s.i < len(s.b) {
		s.ws()
		switch s.peek() {
		case ']':
			s.i++
			return
		case ',':
			s.i++
			continue
		}
		start := s.i
		elem()
		s.progress(start)
	}
}

// progress makes sure a step moved the scan on.
func (s *keyScanner) progress(start int) {
	if s.i == start {
		s.skip()
	}
	if s.i == start {
		s.i++
	}
}

// str reads the string whose opening quote is at s.i and returns its raw
// bytes, escapes as written.
func (s *keyScanner) str() []byte {
	start := s.i + 1
	for j := start; j <= len(s.b); {
		k := bytes.IndexByte(s.b[j:], '"')
		if k < 0 {
			break
		}
		j += k
		backslashes := 0
		for q := j - 1; q >= start && s.b[q] == '\\'; q-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			s.i = j + 1
			return s.b[start:j]
		}
		j++
	}
	s.i = len(s.b)
	return nil
}

// skip moves past the value at s.i.
func (s *keyScanner) skip() {
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.str()
			if depth == 0 {
				return
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return // the end of the enclosing value
			}
			depth--
			if depth == 0 {
				s.i++
				return
			}
		case ',', ' ', '\t', '\r', '\n', ':':
			if depth == 0 {
				return // the end of a number or literal
			}
		}
		s.i++
	}
}

// keyIs reports whether key is name, ASCII case folded as encoding/json
// matches field names; name is lower case.
func keyIs(key []byte, name string) bool {
	if len(key) != len(name) {
		return false
	}
	for i := range len(key) {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

func keyIn(key []byte, names []string) bool {
	for _, n := range names {
		if keyIs(key, n) {
			return true
		}
	}
	return false
}
