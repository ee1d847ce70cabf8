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

// Counts tallies the items of one delivery by kind. Messages and Echoes
// count the messages kept in Delivery.Messages (a mid repeated inside the
// delivery is counted once); every other field counts items as received.
type Counts struct {
	Messages  int // inbound messages: the customer wrote
	Echoes    int // outbound messages: the business wrote
	Unsends   int // messages the sender took back
	Reactions int
	Reads     int
	Postbacks int
	Referrals int
	Edits     int // message_edit items
	Changes   int // entry[].changes[] items: comments, mentions, dashboard tests
	Other     int // messaging items of a kind this package does not know
}

// Delivery is what one webhook POST carries.
type Delivery struct {
	// Messages are the new messages in delivery order. Each has passed
	// domain.Message.Validate; ID, CreatedAt and MirrorStatus are left zero
	// for the store to fill.
	Messages []domain.Message
	// Unsends are the mids of messages their sender unsent. A mid may
	// repeat; marking a message deleted twice is harmless.
	Unsends []string
	Counts  Counts
}

// Parse decodes and validates one webhook delivery body: valid UTF-8, one
// JSON object with "object": "instagram" and an entry list. Messaging items
// of kind message become Messages (or Unsends); reactions, reads,
// postbacks, referrals, edits, unknown kinds and entry changes are only
// counted. A stored message needs a mid, sender and recipient ids and a
// positive timestamp (seconds or milliseconds, number or numeric string);
// a repeated mid keeps its first message. Every error wraps ErrMalformed
// and says briefly what is wrong, never quoting message text.
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
		return nil, fmt.Errorf("%w: %s", ErrMalformed, describeJSONError(err))
	}
	if w.Object != "instagram" {
		return nil, fmt.Errorf("%w: object is not \"instagram\"", ErrMalformed)
	}
	if w.Entry == nil {
		return nil, fmt.Errorf("%w: entry list is missing", ErrMalformed)
	}
	p := parser{d: &Delivery{}}
	if err := p.entries(*w.Entry); err != nil {
		return nil, err
	}
	return p.d, nil
}

// parser carries the state of one Parse: the delivery being built and the
// set of mids already kept.
type parser struct {
	d    *Delivery
	seen map[string]struct{} // built only once a delivery holds many messages
}

// smallBatch is how many kept messages a linear duplicate scan handles
// before a map pays for itself.
const smallBatch = 16

func (p *parser) entries(entries []wireEntry) error {
	stored := 0
	for i := range entries {
		for j := range entries[i].Messaging {
			if m := entries[i].Messaging[j].Message; m != nil && !m.IsDeleted {
				stored++
			}
		}
	}
	if stored > 0 {
		p.d.Messages = make([]domain.Message, 0, stored)
	}
	for i := range entries {
		e := &entries[i]
		p.d.Counts.Changes += len(e.Changes)
		for j := range e.Messaging {
			if err := p.item(i, j, &e.Messaging[j]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *parser) item(entry, index int, it *wireItem) error {
	c := &p.d.Counts
	switch {
	case it.Message != nil:
		return p.message(entry, index, it)
	case bool(it.Reaction):
		c.Reactions++
	case bool(it.Read):
		c.Reads++
	case bool(it.Postback):
		c.Postbacks++
	case bool(it.Referral):
		c.Referrals++
	case bool(it.MessageEdit):
		c.Edits++
	default:
		c.Other++
	}
	return nil
}

func (p *parser) message(entry, index int, it *wireItem) error {
	wm := it.Message
	if wm.MID == "" {
		return itemError(entry, index, "message.mid is required")
	}
	if wm.IsDeleted {
		// Only the mid matters for an unsend, so a delivery is not refused
		// (and retried by Meta for an hour) over its other fields.
		p.d.Unsends = append(p.d.Unsends, wm.MID)
		p.d.Counts.Unsends++
		return nil
	}
	switch {
	case it.Sender.ID == "":
		return itemError(entry, index, "sender.id is required")
	case it.Recipient.ID == "":
		return itemError(entry, index, "recipient.id is required")
	case !it.Timestamp.ok:
		return itemError(entry, index, "timestamp is missing or invalid")
	}
	if p.duplicate(wm.MID) {
		return nil
	}
	attachments, err := encodeAttachments(wm.Attachments)
	if err != nil {
		return fmt.Errorf("%w: entry %d messaging %d: attachments: %w", ErrMalformed, entry, index, err)
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
	})
	m := &p.d.Messages[len(p.d.Messages)-1]
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: entry %d messaging %d: %w", ErrMalformed, entry, index, err)
	}
	if p.seen != nil {
		p.seen[wm.MID] = struct{}{}
	}
	if direction == domain.Outbound {
		p.d.Counts.Echoes++
	} else {
		p.d.Counts.Messages++
	}
	return nil
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

// encodeAttachments renders attachments as the JSON list the store keeps,
// or "" when there are none.
func encodeAttachments(in []wireAttachment) (string, error) {
	if len(in) == 0 {
		return "", nil
	}
	out := make([]domain.Attachment, len(in))
	for i, a := range in {
		out[i] = domain.Attachment{Type: a.Type, URL: a.Payload.URL}
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	// CDN URLs are full of '&'; HTML escaping would make them unreadable
	// in the admin API for no gain.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func itemError(entry, index int, what string) error {
	return fmt.Errorf("%w: entry %d messaging %d: %s", ErrMalformed, entry, index, what)
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
