package instagram_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/instagram"
)

// Mids of the sample deliveries.
const (
	midText     = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwMQZDZD"
	midEcho     = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwMgZDZD"
	midUnicode  = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwMwZDZD"
	midImage    = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwNAZDZD"
	midFirst    = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwNQZDZD"
	midSecond   = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwNgZDZD"
	midOtherAcc = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAyOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAwNwZDZD"

	customer  = "5582201937461123"
	business  = "17841400000000001"
	customer2 = "6610293847561290"
	business2 = "17841400000000002"
)

// parsedMessage is the part of a domain.Message that Parse fills.
type parsedMessage struct {
	MID, SenderID, RecipientID, UserID string
	Direction                          domain.Direction
	Text, Attachments, ReplyTo         string
	Timestamp                          time.Time
}

func project(t *testing.T, m domain.Message) parsedMessage {
	t.Helper()
	if m.InstagramMessageID == nil {
		t.Fatalf("message has no instagram_message_id")
	}
	if m.ID != 0 || !m.CreatedAt.IsZero() || m.MirrorStatus != "" {
		t.Errorf("store-owned fields set: id %d, created_at %v, mirror_status %q", m.ID, m.CreatedAt, m.MirrorStatus)
	}
	if m.Timestamp.Location() != time.UTC {
		t.Errorf("timestamp location: got %v, want UTC", m.Timestamp.Location())
	}
	return parsedMessage{
		MID: *m.InstagramMessageID, SenderID: m.SenderID, RecipientID: m.RecipientID, UserID: m.UserID,
		Direction: m.Direction, Text: m.MessageText, Attachments: m.Attachments, ReplyTo: m.ReplyToMID,
		Timestamp: m.Timestamp,
	}
}

func projectAll(t *testing.T, ms []domain.Message) []parsedMessage {
	t.Helper()
	var out []parsedMessage
	for _, m := range ms {
		out = append(out, project(t, m))
	}
	return out
}

func ms(v int64) time.Time { return time.UnixMilli(v).UTC() }

func mustParse(t *testing.T, body []byte) *instagram.Delivery {
	t.Helper()
	d, err := instagram.Parse(body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d
}

func TestParseSamples(t *testing.T) {
	inbound := func(mid, text string, ts int64) parsedMessage {
		return parsedMessage{MID: mid, SenderID: customer, RecipientID: business, UserID: customer,
			Direction: domain.Inbound, Text: text, Timestamp: ms(ts)}
	}
	withReply := func(m parsedMessage, mid string) parsedMessage { m.ReplyTo = mid; return m }
	withAttachments := func(m parsedMessage, a string) parsedMessage { m.Attachments = a; return m }

	tests := map[string]struct {
		messages []parsedMessage
		unsends  []string
		counts   instagram.Counts
	}{
		"inbound_text.json": {
			messages: []parsedMessage{inbound(midText, "Hi! Do you ship to Kyiv?", 1763770000123)},
			counts:   instagram.Counts{Messages: 1},
		},
		"inbound_unicode_escaped.json": {
			messages: []parsedMessage{inbound(midUnicode, "Привіт! Olá, café? 😍👍", 1763770119876)},
			counts:   instagram.Counts{Messages: 1},
		},
		"echo_text.json": {
			messages: []parsedMessage{{MID: midEcho, SenderID: business, RecipientID: customer, UserID: customer,
				Direction: domain.Outbound, Text: "Yes, delivery takes 2-3 days.", Timestamp: ms(1763770060511)}},
			counts: instagram.Counts{Echoes: 1},
		},
		"inbound_attachment.json": {
			messages: []parsedMessage{withAttachments(inbound(midImage, "", 1763770179001),
				`[{"type":"image","url":"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1790000000000001&signature=AbC"}]`)},
			counts: instagram.Counts{Messages: 1},
		},
		"inbound_unsend.json": {
			unsends: []string{midText},
			counts:  instagram.Counts{Unsends: 1},
		},
		"reaction_and_read.json": {
			counts: instagram.Counts{Reactions: 1, Reads: 1},
		},
		"batch_two_entries.json": {
			messages: []parsedMessage{
				inbound(midFirst, "first", 1763770399001),
				withReply(inbound(midSecond, "second", 1763770399002), midFirst),
				{MID: midOtherAcc, SenderID: customer2, RecipientID: business2, UserID: customer2,
					Direction: domain.Inbound, Text: "hello from another account", Timestamp: ms(1763770399100)},
			},
			counts: instagram.Counts{Messages: 3},
		},
		"comment_changes.json": {
			counts: instagram.Counts{Changes: 1},
		},
		"dashboard_test_messages.json": {
			counts: instagram.Counts{Changes: 1},
		},
	}

	seen := map[string]bool{}
	for _, path := range mustSampleFiles(t) {
		name := filepath.Base(path)
		seen[name] = true
		tt, ok := tests[name]
		if !ok {
			t.Errorf("sample %s has no expectation in this test", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			d := mustParse(t, mustReadSample(t, name))
			if got, want := projectAll(t, d.Messages), tt.messages; !reflect.DeepEqual(got, want) {
				t.Errorf("messages:\n got %+v\nwant %+v", got, want)
			}
			if got, want := d.Unsends, tt.unsends; !reflect.DeepEqual(got, want) {
				t.Errorf("unsends: got %q, want %q", got, want)
			}
			if got, want := d.Counts, tt.counts; got != want {
				t.Errorf("counts: got %+v, want %+v", got, want)
			}
		})
	}
	for name := range tests {
		if !seen[name] {
			t.Errorf("expected sample %s is missing from %s", name, webhookDir)
		}
	}
}

func TestParseAttachmentsIsValidJSON(t *testing.T) {
	d := mustParse(t, mustReadSample(t, "inbound_attachment.json"))
	if got, want := len(d.Messages), 1; got != want {
		t.Fatalf("messages: got %d, want %d", got, want)
	}
	var got []domain.Attachment
	if err := json.Unmarshal([]byte(d.Messages[0].Attachments), &got); err != nil {
		t.Fatalf("attachments are not JSON: %v", err)
	}
	want := []domain.Attachment{{Type: "image", URL: "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1790000000000001&signature=AbC"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("attachments: got %+v, want %+v", got, want)
	}
}

func TestParseHostile(t *testing.T) {
	deep := strings.Repeat("[", 100000)
	bigText := strings.Repeat("Hello, світ! <&> \"q\" \\ \n😍 ", 40000)[:1<<20]
	bigTextJSON, err := json.Marshal(bigText)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(bigTextJSON) {
		t.Fatal("1 MB text does not marshal to valid JSON")
	}

	tests := []struct {
		name    string
		body    []byte
		wantErr bool
		check   func(t *testing.T, d *instagram.Delivery)
	}{
		{name: "empty body", body: nil, wantErr: true},
		{name: "whitespace only", body: []byte(" \n\t"), wantErr: true},
		{name: "not json", body: []byte("not json"), wantErr: true},
		{name: "array", body: []byte("[]"), wantErr: true},
		{name: "null", body: []byte("null"), wantErr: true},
		{name: "number", body: []byte("42"), wantErr: true},
		{name: "string", body: []byte(`"instagram"`), wantErr: true},
		{name: "object page", body: []byte(`{"object":"page","entry":[]}`), wantErr: true},
		{name: "object missing", body: []byte(`{"entry":[]}`), wantErr: true},
		{name: "object not a string", body: []byte(`{"object":1,"entry":[]}`), wantErr: true},
		{name: "entry missing", body: []byte(`{"object":"instagram"}`), wantErr: true},
		{name: "entry null", body: []byte(`{"object":"instagram","entry":null}`), wantErr: true},
		{name: "entry not a list", body: []byte(`{"object":"instagram","entry":{}}`), wantErr: true},
		{name: "truncated", body: []byte(`{"object":"instagram","entry":[`), wantErr: true},
		{name: "trailing object", body: []byte(`{"object":"instagram","entry":[]}{}`), wantErr: true},
		{name: "trailing garbage", body: []byte(`{"object":"instagram","entry":[]}x`), wantErr: true},
		{
			name: "entry list empty",
			body: []byte(` {"object":"instagram","entry":[]} ` + "\n"),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := d.Counts, (instagram.Counts{}); got != want || len(d.Messages) != 0 {
					t.Errorf("got counts %+v and %d messages, want nothing", got, len(d.Messages))
				}
			},
		},
		{
			name:    "invalid utf-8",
			body:    deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"caf` + "\xe9\xff" + `"}}`),
			wantErr: true,
		},
		{name: "100000-deep array", body: []byte(deep), wantErr: true},
		{name: "100000-deep array in entry", body: []byte(`{"object":"instagram","entry":` + deep), wantErr: true},
		{name: "100000-deep object in message", body: deliveryOf(strings.Repeat(`{"message":`, 100000)), wantErr: true},
		{name: "sender missing", body: deliveryOf(`{"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "sender id empty", body: deliveryOf(`{"sender":{"id":""},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "sender id a number", body: deliveryOf(`{"sender":{"id":1},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "sender id blank", body: deliveryOf(`{"sender":{"id":"  "},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "sender id too long", body: deliveryOf(`{"sender":{"id":"` + strings.Repeat("1", 101) + `"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "recipient missing", body: deliveryOf(`{"sender":{"id":"1"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "mid missing", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"text":"hi"}}`), wantErr: true},
		{name: "mid empty", body: deliveryOf(messageItem("", "hi")), wantErr: true},
		{name: "unsend mid missing", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"is_deleted":true}}`), wantErr: true},
		{
			name:  "timestamp numeric string",
			body:  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"1527459824","message":{"mid":"m1","text":"hi"}}`),
			check: wantTimestamp(time.Unix(1527459824, 0).UTC()),
		},
		{
			name:  "timestamp milliseconds string",
			body:  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"1763770000123","message":{"mid":"m1","text":"hi"}}`),
			check: wantTimestamp(ms(1763770000123)),
		},
		{
			name:  "timestamp seconds number",
			body:  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1527459824,"message":{"mid":"m1","text":"hi"}}`),
			check: wantTimestamp(time.Unix(1527459824, 0).UTC()),
		},
		{
			name:  "timestamp exponent form",
			body:  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1.763770000123e12,"message":{"mid":"m1","text":"hi"}}`),
			check: wantTimestamp(ms(1763770000123)),
		},
		{name: "timestamp abc", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"abc","message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "timestamp missing", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "timestamp null", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":null,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "timestamp zero", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":0,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "timestamp negative", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":-5,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "timestamp beyond year 9999", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":99999999999999999999,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "timestamp boolean", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":true,"message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{name: "timestamp hex float", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"0x1p40","message":{"mid":"m1","text":"hi"}}`), wantErr: true},
		{
			name:  "bad timestamp on a reaction is ignored",
			body:  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"abc","reaction":{"mid":"m1","action":"react"}}`),
			check: wantCounts(instagram.Counts{Reactions: 1}),
		},
		{
			name:  "unsend needs only its mid",
			body:  deliveryOf(`{"timestamp":"abc","message":{"mid":"m1","is_deleted":true}}`),
			check: wantCounts(instagram.Counts{Unsends: 1}),
		},
		{
			name: "every kind is counted",
			body: deliveryOf(
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"postback":{"mid":"m","title":"Buy","payload":"BUY"}}`,
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"referral":{"ref":"ad","source":"ADS"}}`,
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message_edit":{"mid":"m","text":"x","num_edit":1}}`,
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"optin":{"ref":"x"}}`,
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":null}`,
				`null`,
			),
			check: wantCounts(instagram.Counts{Postbacks: 1, Referrals: 1, Edits: 1, Other: 3}),
		},
		{
			name: "unsupported message is stored without text",
			body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","is_unsupported":true}}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := len(d.Messages), 1; got != want {
					t.Fatalf("messages: got %d, want %d", got, want)
				}
				if got := d.Messages[0]; got.MessageText != "" || got.Attachments != "" {
					t.Errorf("got text %q and attachments %q, want both empty", got.MessageText, got.Attachments)
				}
			},
		},
		{
			name: "same mid twice keeps the first",
			body: deliveryOf(messageItem("m1", "original"), messageItem("m1", "redelivery"), messageItem("m2", "next")),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := texts(d), []string{"original", "next"}; !reflect.DeepEqual(got, want) {
					t.Errorf("texts: got %q, want %q", got, want)
				}
				if got, want := d.Counts, (instagram.Counts{Messages: 2}); got != want {
					t.Errorf("counts: got %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "same mids in a large batch",
			body: func() []byte {
				var items []string
				for i := range 100 {
					items = append(items, messageItem(fmt.Sprintf("m%d", i%40), fmt.Sprintf("t%d", i)))
				}
				return deliveryOf(items...)
			}(),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := len(d.Messages), 40; got != want {
					t.Fatalf("messages: got %d, want %d", got, want)
				}
				for i, m := range d.Messages {
					if got, want := m.MessageText, fmt.Sprintf("t%d", i); got != want {
						t.Errorf("message %d: got text %q, want %q", i, got, want)
					}
				}
			},
		},
		{
			name: "1000-message batch",
			body: batchBody(1000),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := len(d.Messages), 1000; got != want {
					t.Fatalf("messages: got %d, want %d", got, want)
				}
				if got, want := d.Counts, (instagram.Counts{Messages: 1000}); got != want {
					t.Errorf("counts: got %+v, want %+v", got, want)
				}
				if got, want := d.Messages[999].MessageText, "Hi! Do you ship to Kyiv? Привіт 999"; got != want {
					t.Errorf("last text: got %q, want %q", got, want)
				}
				if got, want := d.Messages[999].Timestamp, ms(1763770000123+999); !got.Equal(want) {
					t.Errorf("last timestamp: got %v, want %v", got, want)
				}
			},
		},
		{
			name: "1 MB text",
			body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":` + string(bigTextJSON) + `}}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := texts(d), []string{bigText}; !reflect.DeepEqual(got, want) {
					t.Errorf("1 MB text did not survive intact (got %d messages)", len(d.Messages))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := instagram.Parse(tt.body)
			if tt.wantErr {
				if !errors.Is(err, instagram.ErrMalformed) {
					t.Fatalf("got error %v, want one wrapping ErrMalformed", err)
				}
				if d != nil {
					t.Errorf("got a delivery with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check == nil {
				t.Fatal("case has no check")
			}
			tt.check(t, d)
		})
	}
}

func TestParseErrorKeepsTextOut(t *testing.T) {
	const secret = "my card number is 4111"
	bodies := map[string][]byte{
		"mid missing":  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":{"text":"` + secret + `"}}`),
		"bad json":     deliveryOf(`{"message":{"mid":"m1","text":"` + secret + `"}}x`),
		"wrong type":   deliveryOf(`{"message":{"mid":"m1","text":"` + secret + `","is_echo":"` + secret + `"}}`),
		"sender long":  deliveryOf(`{"sender":{"id":"` + strings.Repeat("9", 200) + `"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m1","text":"` + secret + `"}}`),
		"bad utf-8":    deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m1","text":"` + secret + "\xff" + `"}}`),
		"no timestamp": deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"message":{"mid":"m1","text":"` + secret + `"}}`),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			_, err := instagram.Parse(body)
			if !errors.Is(err, instagram.ErrMalformed) {
				t.Fatalf("got error %v, want one wrapping ErrMalformed", err)
			}
			if strings.Contains(err.Error(), "card") {
				t.Errorf("error %q quotes the message text", err)
			}
		})
	}
}

func TestParseValidationErrorWrapsDomain(t *testing.T) {
	body := deliveryOf(`{"sender":{"id":"` + strings.Repeat("1", 101) + `"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m1"}}`)
	_, err := instagram.Parse(body)
	if !errors.Is(err, instagram.ErrMalformed) || !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("got %v, want an error wrapping ErrMalformed and domain.ErrInvalid", err)
	}
}

func wantTimestamp(want time.Time) func(*testing.T, *instagram.Delivery) {
	return func(t *testing.T, d *instagram.Delivery) {
		t.Helper()
		if len(d.Messages) != 1 {
			t.Fatalf("messages: got %d, want 1", len(d.Messages))
		}
		if got := d.Messages[0].Timestamp; !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("timestamp: got %v, want %v", got, want)
		}
	}
}

func wantCounts(want instagram.Counts) func(*testing.T, *instagram.Delivery) {
	return func(t *testing.T, d *instagram.Delivery) {
		t.Helper()
		if got := d.Counts; got != want {
			t.Errorf("counts: got %+v, want %+v", got, want)
		}
		if len(d.Messages) != 0 {
			t.Errorf("messages: got %d, want 0", len(d.Messages))
		}
	}
}

func texts(d *instagram.Delivery) []string {
	var out []string
	for _, m := range d.Messages {
		out = append(out, m.MessageText)
	}
	return out
}
