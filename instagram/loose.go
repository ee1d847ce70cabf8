package instagram

import (
	"encoding/json"
	"errors"
	"fmt"
)

// The loose path reads a delivery whose JSON is valid but holds a value of
// the wrong type somewhere (a number for a text, a string for a flag).
// encoding/json reports only the first such value and not which item held
// it, so the envelope and each entry are decoded to raw items, and each
// item on its own: a spoilt item is counted as invalid, the others are
// parsed as usual. Meta's deliveries never take this path; it costs an
// extra pass and an allocation per item, which the hot path does not pay.

// looseDelivery is the envelope with its entries left raw.
type looseDelivery struct {
	Object string             `json:"object"`
	Entry  *[]json.RawMessage `json:"entry"`
}

// looseEntry is an entry with its lists left raw, so that one list of the
// wrong type does not lose the others.
type looseEntry struct {
	Messaging json.RawMessage `json:"messaging"`
	Standby   json.RawMessage `json:"standby"`
	Changes   json.RawMessage `json:"changes"`
}

func parseLoose(body []byte) (*Delivery, error) {
	var w looseDelivery
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, describeJSONError(err))
	}
	if err := checkEnvelope(w.Object, w.Entry != nil); err != nil {
		return nil, err
	}
	p := parser{d: &Delivery{}}
	entries := make([]wireEntry, 0, len(*w.Entry))
	for i, raw := range *w.Entry {
		var le looseEntry
		if err := json.Unmarshal(raw, &le); err != nil {
			p.invalid("entry is not an object")
			continue
		}
		var e wireEntry
		e.Messaging = p.looseItems(le.Messaging, i, false)
		e.Standby = p.looseItems(le.Standby, i, true)
		if len(le.Changes) > 0 {
			if err := json.Unmarshal(le.Changes, &e.Changes); err != nil {
				p.invalid("changes is not a list")
			}
		}
		entries = append(entries, e)
	}
	p.entries(entries)
	p.unknownNames(body)
	return p.d, nil
}

// looseItems decodes one raw list of items of entry, counting each item
// that does not decode as invalid.
func (p *parser) looseItems(raw json.RawMessage, entry int, standby bool) []wireItem {
	if len(raw) == 0 {
		return nil
	}
	list := "messaging"
	if standby {
		list = "standby"
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(raw, &raws); err != nil {
		p.invalid(list + " is not a list")
		return nil
	}
	items := make([]wireItem, 0, len(raws))
	for j, r := range raws {
		var it wireItem
		if err := json.Unmarshal(r, &it); err != nil {
			p.invalid(describeItemError(err))
			if p.spoilt == nil {
				p.spoilt = make(map[itemPos]struct{})
			}
			p.spoilt[itemPos{entry, standby, j}] = struct{}{}
			continue
		}
		items = append(items, it)
	}
	return items
}

// describeItemError is describeJSONError for one item: the field path
// starts at the item.
func describeItemError(err error) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) && typ.Field == "" {
		return "item is not an object"
	}
	return describeJSONError(err)
}
