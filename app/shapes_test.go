package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"igmirror/internal/testkit/mysqltest"
)

// TestDeliveryShapes2025 posts the delivery shapes Meta sends since 2025
// (standby, is_unsupported, ig_post, message_edit, messaging_seen), an
// unknown kind and an unusable item to a service mirroring into a real
// CRM: each is answered 200, the messages reach the CRM with readable
// text, each item is counted under its kind, and each unknown name and
// invalid reason is logged once however often it comes.
func TestDeliveryShapes2025(t *testing.T) {
	crm := mysqltest.New(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	ta := startApp(t, cfg)

	unknownAndInvalid := []byte(`{"object":"instagram","entry":[{"id":"17841400000000001","time":1763771500500,"hop_context":[],"messaging":[` +
		`{"sender":{"id":"5582201937461123"},"recipient":{"id":"17841400000000001"},"timestamp":1763771500123,"optin":{"ref":"x"}},` +
		`{"sender":{"id":"5582201937461123"},"recipient":{"id":"17841400000000001"},"timestamp":1763771500124,"message":{"text":"no mid here"}},` +
		`{"sender":{"id":"5582201937461123"},"recipient":{"id":"17841400000000001"},"timestamp":"2025-11-22T00:31:40.125Z","message":{"mid":"mid.shapes.iso","text":"iso time"}}]}]}`)

	before := scrape(t, ta)
	for _, tc := range []struct {
		name   string
		body   []byte
		stored int
	}{
		{"standby_message.json", sample(t, "standby_message.json"), 1},
		{"inbound_unsupported.json", sample(t, "inbound_unsupported.json"), 1},
		{"inbound_ig_post.json", sample(t, "inbound_ig_post.json"), 1},
		{"message_edit.json", sample(t, "message_edit.json"), 0},
		{"messaging_seen.json", sample(t, "messaging_seen.json"), 0},
		{"unknown and invalid", unknownAndInvalid, 1},
		{"unknown and invalid again", unknownAndInvalid, 0},
	} {
		code, body := ta.post(tc.body)
		if code != http.StatusOK {
			t.Fatalf("%s: got %d %s, want 200", tc.name, code, body)
		}
		if want := `"stored":` + string(rune('0'+tc.stored)); !strings.Contains(body, want) {
			t.Errorf("%s: got %s, want %s", tc.name, body, want)
		}
	}
	waitMirrored(t, ta, crm, 4)
	after := scrape(t, ta)

	var got []string
	for _, r := range crm.Rows(t) {
		got = append(got, r.Message)
	}
	slices.Sort(got)
	want := []string{"[Instagram post]", "[unsupported]", "iso time", "Чи можна оплатити карткою? 💳"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("CRM messages: got %q, want %q", got, want)
	}

	for kind, n := range map[string]float64{
		"standby": 1, "edit": 1, "read": 1,
		"message": 4, // unsupported, ig_post, and the ISO-timed one twice (items, not rows)
		"invalid": 2, // the item without a mid, posted twice
		"other":   4, // the optin item and the hop_context entry key, twice
	} {
		if d := after.value(t, "igmirror_webhook_items_total", "kind", kind) -
			before.value(t, "igmirror_webhook_items_total", "kind", kind); d != n {
			t.Errorf("items{kind=%s}: got +%v, want +%v", kind, d, n)
		}
	}

	logs := ta.logs.String()
	for _, s := range []string{`"name":"messaging.optin"`, `"name":"entry.hop_context"`, `"reason":"message.mid is required"`} {
		if got := strings.Count(logs, s); got != 1 {
			t.Errorf("log lines with %s: got %d, want 1", s, got)
		}
	}
	if strings.Contains(logs, "no mid here") {
		t.Error("the invalid item's text reached the log")
	}
}
