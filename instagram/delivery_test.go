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
	midStandby  = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAxMAZDZD"
	midUnsupp   = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAxMQZDZD"
	midIGPost   = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEzMjUxNTQyNjQ5MDAwMDAxMgZDZD"

	customer  = "5582201937461123"
	business  = "17841400000000001"
	customer2 = "6610293847561290"
	customer3 = "5582201937461777"
	business2 = "17841400000000002"
)

// parsedMessage is the part of a domain.Message that Parse fills.
type parsedMessage struct {
	MID, SenderID, RecipientID, UserID string
	Direction                          domain.Direction
	Text, Attachments, ReplyTo         string
	Timestamp                          time.Time
	Standby                            bool
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
		Timestamp: m.Timestamp, Standby: m.Standby,
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
		edits    []domain.Edit
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
		"standby_message.json": {
			messages: []parsedMessage{{MID: midStandby, SenderID: customer3, RecipientID: business, UserID: customer3,
				Direction: domain.Inbound, Text: "Чи можна оплатити карткою? 💳", Timestamp: ms(1763771000123), Standby: true}},
			counts: instagram.Counts{Standby: 1},
		},
		"inbound_unsupported.json": {
			messages: []parsedMessage{withAttachments(inbound(midUnsupp, "", 1763771200123), `[{"type":"unsupported"}]`)},
			counts:   instagram.Counts{Messages: 1},
		},
		"inbound_ig_post.json": {
			messages: []parsedMessage{withAttachments(inbound(midIGPost, "", 1763771300123),
				`[{"type":"ig_post","url":"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=18012345678901234"}]`)},
			counts: instagram.Counts{Messages: 1},
		},
		"message_edit.json": {
			edits:  []domain.Edit{{MID: midText, Text: "Hi! Do you ship to Kyiv and Lviv?", NumEdit: 1}},
			counts: instagram.Counts{Edits: 1},
		},
		"messaging_seen.json": {
			counts: instagram.Counts{Reads: 1},
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
			if got, want := d.Edits, tt.edits; !reflect.DeepEqual(got, want) {
				t.Errorf("edits: got %+v, want %+v", got, want)
			}
			if got, want := d.Counts, tt.counts; got != want {
				t.Errorf("counts: got %+v, want %+v", got, want)
			}
			// Meta's own samples use only what Parse knows.
			if len(d.Invalid) != 0 || len(d.Unknown) != 0 {
				t.Errorf("got invalid %q and unknown %q, want none", d.Invalid, d.Unknown)
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

	const badTime = "timestamp is missing or not a usable time"
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
		{name: "sender missing", body: deliveryOf(`{"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid("sender.id is required")},
		{name: "sender id empty", body: deliveryOf(`{"sender":{"id":""},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid("sender.id is required")},
		{name: "sender id a number", body: deliveryOf(`{"sender":{"id":1},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid("field sender.id has the wrong json type")},
		{name: "sender id blank", body: deliveryOf(`{"sender":{"id":"  "},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid("invalid message: sender_id is required")},
		{name: "sender id too long", body: deliveryOf(`{"sender":{"id":"` + strings.Repeat("1", 101) + `"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid("invalid message: an id is longer than allowed")},
		{name: "recipient missing", body: deliveryOf(`{"sender":{"id":"1"},"timestamp":1763770000123,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid("recipient.id is required")},
		{name: "mid missing", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"text":"hi"}}`), check: wantInvalid("message.mid is required")},
		{name: "mid empty", body: deliveryOf(messageItem("", "hi")), check: wantInvalid("message.mid is required")},
		{name: "unsend mid missing", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"is_deleted":true}}`), check: wantInvalid("message.mid is required")},
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
		{
			name:  "timestamp ISO 8601 with milliseconds (Chatwoot's fixtures)",
			body:  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"2021-09-08T06:34:04.000Z","message":{"mid":"m1","text":"hi"}}`),
			check: wantTimestamp(time.Date(2021, 9, 8, 6, 34, 4, 0, time.UTC)),
		},
		{
			name:  "timestamp ISO 8601 with an offset",
			body:  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"2021-09-08T09:34:04.250+03:00","message":{"mid":"m1","text":"hi"}}`),
			check: wantTimestamp(time.Date(2021, 9, 8, 6, 34, 4, 250e6, time.UTC)),
		},
		{
			name:  "timestamp ISO 8601 with a colonless offset (Graph API)",
			body:  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"2021-09-08T06:34:04+0000","message":{"mid":"m1","text":"hi"}}`),
			check: wantTimestamp(time.Date(2021, 9, 8, 6, 34, 4, 0, time.UTC)),
		},
		{name: "timestamp ISO 8601 month 13", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"2021-13-08T06:34:04Z","message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp ISO 8601 before the epoch", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"1969-12-31T23:59:59Z","message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp ISO 8601 without a zone", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"2021-09-08T06:34:04","message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp date only", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"2021-09-08","message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp abc", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"abc","message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp missing", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp null", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":null,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp zero", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":0,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp negative", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":-5,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp beyond year 9999", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":99999999999999999999,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp boolean", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":true,"message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
		{name: "timestamp hex float", body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"0x1p40","message":{"mid":"m1","text":"hi"}}`), check: wantInvalid(badTime)},
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
			check: func(t *testing.T, d *instagram.Delivery) {
				wantCounts(instagram.Counts{Postbacks: 1, Referrals: 1, Edits: 1, Other: 3})(t, d)
				if got, want := d.Unknown, []string{"messaging.optin", "messaging.(no kind)"}; !reflect.DeepEqual(got, want) {
					t.Errorf("unknown: got %q, want %q", got, want)
				}
			},
		},
		{
			name: "unsupported message is stored without text, marked unsupported",
			body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","is_unsupported":true}}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := len(d.Messages), 1; got != want {
					t.Fatalf("messages: got %d, want %d", got, want)
				}
				m := d.Messages[0]
				if got, want := m.Attachments, `[{"type":"unsupported"}]`; m.MessageText != "" || got != want {
					t.Errorf("got text %q and attachments %q, want no text and %q", m.MessageText, got, want)
				}
				if got, want := domain.DisplayText(&m), "[unsupported]"; got != want {
					t.Errorf("display text: got %q, want %q", got, want)
				}
			},
		},
		{
			name: "unsupported message with an attachment keeps both",
			body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"m1","is_unsupported":true,"attachments":[{"type":"image","payload":{"url":"https://x"}}]}}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := texts(d), []string{""}; !reflect.DeepEqual(got, want) {
					t.Fatalf("texts: got %q, want %q", got, want)
				}
				if got, want := d.Messages[0].Attachments, `[{"type":"image","url":"https://x"},{"type":"unsupported"}]`; got != want {
					t.Errorf("attachments: got %s, want %s", got, want)
				}
			},
		},
		{
			name: "standby items are messages marked standby",
			body: []byte(`{"object":"instagram","entry":[{"id":"2","time":1,"standby":[` +
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"mid":"s1","text":"in"}},` +
				`{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1763770000124,"message":{"mid":"s2","text":"out","is_echo":true}},` +
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000125,"read":{"mid":"s2"}},` +
				`{"timestamp":1763770000126,"message":{"mid":"s0","is_deleted":true}}]}]}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := d.Counts, (instagram.Counts{Standby: 2, Reads: 1, Unsends: 1}); got != want {
					t.Errorf("counts: got %+v, want %+v", got, want)
				}
				if got, want := texts(d), []string{"in", "out"}; !reflect.DeepEqual(got, want) {
					t.Fatalf("texts: got %q, want %q", got, want)
				}
				for i, want := range []domain.Direction{domain.Inbound, domain.Outbound} {
					if m := d.Messages[i]; !m.Standby || m.Direction != want {
						t.Errorf("message %d: got standby %v, direction %s; want standby, %s", i, m.Standby, m.Direction, want)
					}
				}
				if got, want := d.Unsends, []string{"s0"}; !reflect.DeepEqual(got, want) {
					t.Errorf("unsends: got %q, want %q", got, want)
				}
			},
		},
		{
			name: "a mid in messaging and standby is kept once, as first seen",
			body: []byte(`{"object":"instagram","entry":[{"id":"2","time":1,` +
				`"messaging":[` + messageItem("m1", "owned") + `],"standby":[` + messageItem("m1", "standby copy") + `,` + messageItem("m2", "standby only") + `]}]}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := texts(d), []string{"owned", "standby only"}; !reflect.DeepEqual(got, want) {
					t.Errorf("texts: got %q, want %q", got, want)
				}
				if got, want := []bool{d.Messages[0].Standby, d.Messages[1].Standby}, []bool{false, true}; !reflect.DeepEqual(got, want) {
					t.Errorf("standby flags: got %v, want %v", got, want)
				}
				if got, want := d.Counts, (instagram.Counts{Messages: 1, Standby: 1}); got != want {
					t.Errorf("counts: got %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "unknown entry keys and standby kinds are counted and named",
			body: []byte(`{"object":"instagram","entry":[{"id":"2","time":1,"hop_context":[{"app_id":1}],"Messaging":[` + messageItem("m1", "hi") +
				`],"standby":[{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"pass_thread_control":{"new_owner_app_id":"3"}}],` +
				`"\u0077eird":{"a":"}]\""},"hop_context":null}]}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := texts(d), []string{"hi"}; !reflect.DeepEqual(got, want) {
					t.Errorf("texts: got %q, want %q", got, want)
				}
				if got, want := d.Counts, (instagram.Counts{Messages: 1, Other: 4}); got != want {
					t.Errorf("counts: got %+v, want %+v", got, want)
				}
				if got, want := d.Unknown, []string{"entry.hop_context", "entry.weird", "standby.pass_thread_control"}; !reflect.DeepEqual(got, want) {
					t.Errorf("unknown: got %q, want %q", got, want)
				}
			},
		},
		{
			name: "unknown names are bounded per delivery",
			body: func() []byte {
				var b strings.Builder
				b.WriteString(`{"object":"instagram","entry":[{"id":"2"`)
				for i := range 200 {
					fmt.Fprintf(&b, `,"key%03d_%s":1`, i, strings.Repeat("x", 100))
				}
				b.WriteString(`}]}`)
				return []byte(b.String())
			}(),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := d.Counts, (instagram.Counts{Other: 200}); got != want {
					t.Errorf("counts: got %+v, want %+v", got, want)
				}
				if got, want := len(d.Unknown), 32; got != want {
					t.Fatalf("unknown names: got %d, want %d", got, want)
				}
				for _, n := range d.Unknown {
					if len(n) > len("entry.")+64 {
						t.Errorf("name of %d bytes, want at most %d", len(n), len("entry.")+64)
					}
				}
			},
		},
		{
			// encoding/json decodes a repeated key from its last occurrence;
			// the names follow it (found by FuzzParse).
			name: "a repeated list key names only its last occurrence",
			body: []byte(`{"object":"instagram","entry":[{"messaging":[{"optin":{}}],"messaging":[],"standby":[{"x":1}],"standby":[` + messageItem("s1", "kept") + `]}],` +
				`"entry":[{"id":"2","messaging":[{"handover":{}}]}]}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := d.Unknown, []string{"messaging.handover"}; !reflect.DeepEqual(got, want) {
					t.Errorf("unknown: got %q, want %q", got, want)
				}
				// The second entry list is decoded into the first one's
				// element, which keeps its standby list: encoding/json
				// merges, it does not reset.
				if got, want := d.Counts, (instagram.Counts{Standby: 1, Other: 1}); got != want {
					t.Errorf("counts: got %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "message_edit without a mid is invalid",
			body: deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message_edit":{"text":"x","num_edit":2}}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				wantInvalid("message_edit.mid is required")(t, d)
				if len(d.Edits) != 0 {
					t.Errorf("edits: got %+v, want none", d.Edits)
				}
			},
		},
		{
			name: "an item of the wrong json type spoils only itself",
			body: deliveryOf(messageItem("m1", "before"),
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m2","text":42}}`,
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m3","text":"x","is_echo":"yes"}}`,
				`5`,
				`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message_edit":{"mid":"m1","num_edit":"two"}}`,
				messageItem("m4", "after"),
				`{"optin":{"ref":"r"}}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := texts(d), []string{"before", "after"}; !reflect.DeepEqual(got, want) {
					t.Errorf("texts: got %q, want %q", got, want)
				}
				want := []string{"field message.text has the wrong json type", "field message.is_echo has the wrong json type",
					"item is not an object", "field message_edit.num_edit has the wrong json type"}
				if got := d.Invalid; !reflect.DeepEqual(got, want) {
					t.Errorf("invalid: got %q, want %q", got, want)
				}
				if got, want := d.Counts, (instagram.Counts{Messages: 2, Invalid: 4, Other: 1}); got != want {
					t.Errorf("counts: got %+v, want %+v", got, want)
				}
				if got, want := d.Unknown, []string{"messaging.optin"}; !reflect.DeepEqual(got, want) {
					t.Errorf("unknown: got %q, want %q", got, want)
				}
			},
		},
		{
			name: "an entry of the wrong shape spoils only itself",
			body: []byte(`{"object":"instagram","entry":[` +
				`{"id":"2","messaging":{"not":"a list"},"standby":[` + messageItem("s1", "standby kept") + `]},` +
				`"not an entry",` +
				`{"id":"2","changes":"nope","messaging":[` + messageItem("m1", "kept") + `]}]}`),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := texts(d), []string{"standby kept", "kept"}; !reflect.DeepEqual(got, want) {
					t.Errorf("texts: got %q, want %q", got, want)
				}
				if got, want := d.Invalid, []string{"messaging is not a list", "entry is not an object", "changes is not a list"}; !reflect.DeepEqual(got, want) {
					t.Errorf("invalid: got %q, want %q", got, want)
				}
			},
		},
		{
			name: "one bad item in 1000 is counted, the rest kept",
			body: func() []byte {
				items := make([]string, 1000)
				for i := range items {
					items[i] = messageItem(fmt.Sprintf("m%d", i), fmt.Sprintf("t%d", i))
				}
				items[499] = `{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1763770000123,"message":{"text":"no mid"}}`
				return deliveryOf(items...)
			}(),
			check: func(t *testing.T, d *instagram.Delivery) {
				if got, want := len(d.Messages), 999; got != want {
					t.Fatalf("messages: got %d, want %d", got, want)
				}
				if got, want := d.Invalid, []string{"message.mid is required"}; !reflect.DeepEqual(got, want) {
					t.Errorf("invalid: got %q, want %q", got, want)
				}
				if got, want := d.Messages[499].MessageText, "t500"; got != want {
					t.Errorf("message after the bad one: got %q, want %q", got, want)
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

// TestParseReportsKeepTextOut checks that nothing Parse reports, an error
// or an item's invalid reason, quotes the customer's words.
func TestParseReportsKeepTextOut(t *testing.T) {
	const secret = "my card number is 4111"
	bodies := map[string][]byte{
		"mid missing":  deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":{"text":"` + secret + `"}}`),
		"bad json":     deliveryOf(`{"message":{"mid":"m1","text":"` + secret + `"}}x`),
		"wrong type":   deliveryOf(`{"message":{"mid":"m1","text":"` + secret + `","is_echo":"` + secret + `"}}`),
		"sender long":  deliveryOf(`{"sender":{"id":"` + strings.Repeat("9", 200) + `"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m1","text":"` + secret + `"}}`),
		"bad utf-8":    deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m1","text":"` + secret + "\xff" + `"}}`),
		"no timestamp": deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"message":{"mid":"m1","text":"` + secret + `"}}`),
		"bad time":     deliveryOf(`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"` + secret + `","message":{"mid":"m1","text":"x"}}`),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			d, err := instagram.Parse(body)
			var reports []string
			switch {
			case err != nil:
				if !errors.Is(err, instagram.ErrMalformed) {
					t.Fatalf("got error %v, want one wrapping ErrMalformed", err)
				}
				reports = []string{err.Error()}
			default:
				reports = append(d.Invalid, d.Unknown...)
			}
			if len(reports) == 0 {
				t.Fatal("Parse reported nothing about a faulty delivery")
			}
			for _, r := range reports {
				if strings.Contains(r, "card") {
					t.Errorf("report %q quotes the message text", r)
				}
			}
		})
	}
}

// TestParseValidationReasonIsDomains checks that a message domain.Validate
// refuses is counted invalid with Validate's own reason.
func TestParseValidationReasonIsDomains(t *testing.T) {
	body := deliveryOf(`{"sender":{"id":"` + strings.Repeat("1", 101) + `"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m1"}}`)
	d := mustParse(t, body)
	m := domain.Message{SenderID: strings.Repeat("1", 101), RecipientID: "2", Direction: domain.Inbound, Timestamp: time.Unix(1, 0)}
	verr := m.Validate()
	if !errors.Is(verr, domain.ErrInvalid) {
		t.Fatalf("Validate: got %v, want an error wrapping ErrInvalid", verr)
	}
	if got, want := d.Invalid, []string{verr.Error()}; !reflect.DeepEqual(got, want) {
		t.Errorf("invalid: got %q, want %q", got, want)
	}
	if len(d.Messages) != 0 {
		t.Errorf("messages: got %d, want 0", len(d.Messages))
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

// wantInvalid checks a delivery of one item that could not be used.
func wantInvalid(reason string) func(*testing.T, *instagram.Delivery) {
	return func(t *testing.T, d *instagram.Delivery) {
		t.Helper()
		if got, want := d.Invalid, []string{reason}; !reflect.DeepEqual(got, want) {
			t.Errorf("invalid: got %q, want %q", got, want)
		}
		if got, want := d.Counts, (instagram.Counts{Invalid: 1}); got != want {
			t.Errorf("counts: got %+v, want %+v", got, want)
		}
		if len(d.Messages) != 0 || len(d.Unsends) != 0 {
			t.Errorf("got %d messages and %d unsends, want none", len(d.Messages), len(d.Unsends))
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
