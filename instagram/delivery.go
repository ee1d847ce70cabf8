package instagram

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"igmirror/domain"
)

// Counts tallies the items of one delivery by kind. Messages, Echoes and
// Standby count the messages kept in Delivery.Messages (a mid repeated
// inside the delivery is counted once); every other field counts items
// as received.
type Counts struct {
	Messages  int // inbound messages: the customer wrote
	Echoes    int // outbound messages: the business wrote
	Standby   int // messages, either direction, from entry[].standby[]
	Unsends   int // messages the sender took back
	Reactions int
	Reads     int // read items: Meta's messaging_seen field
	Postbacks int
	Referrals int
	Edits     int // message_edit items kept in Delivery.Edits
	Changes   int // entry[].changes[] items: comments, mentions, dashboard tests
	Invalid   int // items that could not be used; reasons in Delivery.Invalid
	Other     int // items of a kind, and entry keys, this package does not know
}

// Delivery is what one webhook POST carries.
type Delivery struct {
	// Messages are the new messages in delivery order. Each has passed
	// domain.Message.Validate; ID, CreatedAt and MirrorStatus are left zero
	// for the store to fill. Those from entry[].standby[] have Standby set.
	Messages []domain.Message
	// Unsends are the mids of messages their sender unsent. A mid may
	// repeat; marking a message deleted twice is harmless.
	Unsends []string
	// Edits are the message_edit items in delivery order.
	Edits []domain.Edit
	// Invalid holds, for each item counted in Counts.Invalid, a short
	// reason such as "message.mid is required". A reason names fields,
	// never their values, and no position, so that equal faults read the
	// same and can be logged once.
	Invalid []string
	// Unknown lists, once each, the names this package does not know:
	// "entry.<key>" for an entry key, "messaging.<key>" or
	// "standby.<key>" for an item kind, and "messaging.(no kind)" for an
	// item with none. At most maxUnknown names are listed.
	Unknown []string
	Counts  Counts
}

// Parse decodes one webhook delivery body. Only the envelope can make it
// fail: the body must be valid UTF-8 and one JSON object with "object":
// "instagram" and an entry list, else the error wraps ErrMalformed and
// says briefly what is wrong, never quoting message text.
//
// Within an authentic envelope nothing refuses the delivery. Messaging
// and standby items of kind message become Messages (or Unsends);
// message_edit items become Edits; reactions, reads, postbacks,
// referrals and entry changes are counted; unknown kinds and entry keys
// are counted as Other and named in Unknown. A stored message needs a
// mid, sender and recipient ids and a time (seconds or milliseconds,
// number or numeric string, or an ISO 8601 string); an item without what
// it needs, or with a value of the wrong JSON type, is counted as Invalid
// with its reason, and the rest of the delivery is parsed as usual. A
// repeated mid keeps its first message.
func Parse(body []byte) (*Delivery, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: body is not valid utf-8", ErrMalformed)
	}
	// json.Unmarshal accepts null into a struct without complaint, so the
	// shape has to be checked before decoding.
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: body is not a json object", ErrMalformed)
	}
	var w wireDelivery
	if err := json.Unmarshal(body, &w); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			// The body is valid JSON (syntax is checked before any value
			// is decoded) with a value of the wrong type somewhere: find
			// the items it spoils, one by one, off the hot path.
			return parseLoose(body)
		}
		return nil, fmt.Errorf("%w: %s", ErrMalformed, describeJSONError(err))
	}
	if err := checkEnvelope(w.Object, w.Entry != nil); err != nil {
		return nil, err
	}
	p := parser{d: &Delivery{}}
	p.entries(*w.Entry)
	p.unknownNames(body)
	return p.d, nil
}

func checkEnvelope(object string, hasEntry bool) error {
	if object != "instagram" {
		return fmt.Errorf("%w: object is not \"instagram\"", ErrMalformed)
	}
	if !hasEntry {
		return fmt.Errorf("%w: entry list is missing", ErrMalformed)
	}
	return nil
}

// parser carries the state of one Parse: the delivery being built and the
// set of mids already kept.
type parser struct {
	d    *Delivery
	seen map[string]struct{} // built only once a delivery holds many messages
	// spoilt holds the items the loose path could not decode: they are
	// counted invalid, so the name scan must not name them as unknown.
	spoilt map[itemPos]struct{}
}

// itemPos is where an item sits in a delivery.
type itemPos struct {
	entry   int
	standby bool
	index   int
}

// smallBatch is how many kept messages a linear duplicate scan handles
// before a map pays for itself.
const smallBatch = 16

func (p *parser) entries(entries []wireEntry) {
	stored := 0
	for i := range entries {
		stored += storable(entries[i].Messaging) + storable(entries[i].Standby)
	}
	if stored > 0 {
		p.d.Messages = make([]domain.Message, 0, stored)
	}
	for i := range entries {
		e := &entries[i]
		p.d.Counts.Changes += len(e.Changes)
		for j := range e.Messaging {
			p.item(&e.Messaging[j], false)
		}
		for j := range e.Standby {
			p.item(&e.Standby[j], true)
		}
	}
}

// storable counts the items that may become messages, to size the list.
func storable(items []wireItem) int {
	n := 0
	for j := range items {
		if m := items[j].Message; m != nil && !m.IsDeleted {
			n++
		}
	}
	return n
}

func (p *parser) item(it *wireItem, standby bool) {
	c := &p.d.Counts
	switch {
	case it.Message != nil:
		p.message(it, standby)
	case bool(it.Reaction):
		c.Reactions++
	case bool(it.Read):
		c.Reads++
	case bool(it.Postback):
		c.Postbacks++
	case bool(it.Referral):
		c.Referrals++
	case it.MessageEdit != nil:
		p.edit(it.MessageEdit)
	default:
		c.Other++
	}
}

// invalid counts an item that cannot be used and keeps why.
func (p *parser) invalid(reason string) {
	p.d.Counts.Invalid++
	p.d.Invalid = append(p.d.Invalid, reason)
}

func (p *parser) edit(e *wireEdit) {
	if e.MID == "" {
		p.invalid("message_edit.mid is required")
		return
	}
	p.d.Edits = append(p.d.Edits, domain.Edit{MID: e.MID, Text: e.Text, NumEdit: e.NumEdit})
	p.d.Counts.Edits++
}

func (p *parser) message(it *wireItem, standby bool) {
	wm := it.Message
	if wm.MID == "" {
		p.invalid("message.mid is required")
		return
	}
	if wm.IsDeleted {
		// Only the mid matters for an unsend, so its other fields are not
		// checked.
		p.d.Unsends = append(p.d.Unsends, wm.MID)
		p.d.Counts.Unsends++
		return
	}
	switch {
	case it.Sender.ID == "":
		p.invalid("sender.id is required")
		return
	case it.Recipient.ID == "":
		p.invalid("recipient.id is required")
		return
	case !it.Timestamp.ok:
		p.invalid("timestamp is missing or not a usable time")
		return
	}
	if p.duplicate(wm.MID) {
		return
	}
	attachments, err := encodeAttachments(wm.Attachments, wm.IsUnsupported)
	if err != nil {
		p.invalid("attachments cannot be encoded")
		return
	}
	direction := domain.Inbound
	if wm.IsEcho {
		direction = domain.Outbound
	}
	p.d.Messages = append(p.d.Messages, domain.Message{
		// Pointing into the decoded struct saves one allocation per message.
		InstagramMessageID: &wm.MID,
		SenderID:           it.Sender.ID,
		RecipientID:        it.Recipient.ID,
		Direction:          direction,
		MessageText:        wm.Text,
		Timestamp:          it.Timestamp.t,
		Attachments:        attachments,
		ReplyToMID:         wm.ReplyTo.MID,
		Standby:            standby,
	})
	m := &p.d.Messages[len(p.d.Messages)-1]
	if err := m.Validate(); err != nil {
		p.d.Messages = p.d.Messages[:len(p.d.Messages)-1]
		// Validate's errors name the field, never its value.
		p.invalid(err.Error())
		return
	}
	if p.seen != nil {
		p.seen[wm.MID] = struct{}{}
	}
	switch {
	case standby:
		p.d.Counts.Standby++
	case direction == domain.Outbound:
		p.d.Counts.Echoes++
	default:
		p.d.Counts.Messages++
	}
}

// duplicate reports whether a message with mid is already kept: Meta may
// put a redelivery into the same batch as the original.
func (p *parser) duplicate(mid string) bool {
	if p.seen == nil {
		if len(p.d.Messages) < smallBatch {
			for i := range p.d.Messages {
				if *p.d.Messages[i].InstagramMessageID == mid {
					return true
				}
			}
			return false
		}
		p.seen = make(map[string]struct{}, cap(p.d.Messages))
		for i := range p.d.Messages {
			p.seen[*p.d.Messages[i].InstagramMessageID] = struct{}{}
		}
	}
	_, ok := p.seen[mid]
	return ok
}

// unsupportedOnly is the attachments list of an is_unsupported message
// with nothing else, the common case, kept as a constant.
const unsupportedOnly = `[{"type":"` + domain.AttachmentUnsupported + `"}]`

// encodeAttachments renders attachments as the JSON list the store keeps,
// or "" when there are none. An is_unsupported message gets an attachment
// of type domain.AttachmentUnsupported, so that the store keeps the mark
// and DisplayText can say why the message has no text.
func encodeAttachments(in []wireAttachment, unsupported bool) (string, error) {
	if len(in) == 0 {
		if unsupported {
			return unsupportedOnly, nil
		}
		return "", nil
	}
	out := make([]domain.Attachment, len(in), len(in)+1)
	for i, a := range in {
		out[i] = domain.Attachment{Type: a.Type, URL: a.Payload.URL}
	}
	if unsupported {
		out = append(out, domain.Attachment{Type: domain.AttachmentUnsupported})
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	// CDN URLs are full of '&'; HTML escaping would make them unreadable
	// in the admin API for no gain.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return "", fmt.Errorf("encode attachments: %w", err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// describeJSONError names what the decoder disliked without quoting the
// body, which may hold a customer's words.
func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Sprintf("invalid json near byte %d", syntax.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field == "" {
			return "unexpected json type"
		}
		return fmt.Sprintf("field %s has the wrong json type", typ.Field)
	}
	return "invalid json"
}
