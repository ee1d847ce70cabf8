package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"igmirror/domain"
	"igmirror/internal/testkit/mysqltest"
)

// hostileItem is one messaging item of a delivery; the test data of this
// file builds deliveries from them.
func hostileItem(n int, text string) map[string]any {
	return map[string]any{
		"sender":    map[string]any{"id": "5582201937461123"},
		"recipient": map[string]any{"id": "17841400000000001"},
		"timestamp": 1763770000123 + int64(n)*1000,
		"message":   map[string]any{"mid": fmt.Sprintf("mid.hostile.%d", n), "text": text},
	}
}

// hostileDelivery wraps items in one entry of an Instagram delivery.
func hostileDelivery(t testing.TB, items ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"object": "instagram",
		"entry":  []any{map[string]any{"id": "17841400000000001", "time": 1763770000500, "messaging": items}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostileWithout returns item with the dotted key removed.
func hostileWithout(item map[string]any, key string) map[string]any {
	out := map[string]any{}
	for k, v := range item {
		out[k] = v
	}
	if k, sub, ok := strings.Cut(key, "."); ok {
		inner := map[string]any{}
		for ik, iv := range out[k].(map[string]any) {
			inner[ik] = iv
		}
		delete(inner, sub)
		out[k] = inner
		return out
	}
	delete(out, key)
	return out
}

func hostileWith(item map[string]any, key string, v any) map[string]any {
	out := map[string]any{}
	for k, val := range item {
		out[k] = val
	}
	out[key] = v
	return out
}

// TestHostileDeliveries posts signed deliveries that are wrong in every
// way a sender can get them wrong. Each gets its status and nothing
// panics. A delivery whose envelope is wrong is refused whole (400); in
// a sound envelope, an item that cannot be used is counted as invalid and
// the rest is stored (200): an authentic delivery is never refused, and
// retried by Meta for an hour, over one item.
func TestHostileDeliveries(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTPMaxBodySize = 2 << 20
	ta := startApp(t, cfg)

	batch := make([]map[string]any, 1000)
	for i := range batch {
		batch[i] = hostileItem(10_000+i, fmt.Sprint("batch message ", i))
	}
	poisoned := make([]map[string]any, 1000)
	for i := range poisoned {
		poisoned[i] = hostileItem(20_000+i, fmt.Sprint("poisoned batch ", i))
	}
	poisoned[499] = hostileWithout(poisoned[499], "message.mid")
	invalidUTF8 := bytes.Replace(hostileDelivery(t, hostileItem(1, "PLACEHOLDER")), []byte("PLACEHOLDER"), []byte("bad \xff\xfe bytes"), 1)
	deepInEntry := []byte(`{"object":"instagram","entry":[` + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + `]}`)
	deepElsewhere := []byte(`{"object":"instagram","entry":[],"extra":` + strings.Repeat(`{"a":`, 2_000) + `1` + strings.Repeat("}", 2_000) + `}`)
	big := "a" + strings.Repeat("€", 349_525) // 1 MiB exactly
	tooBig := hostileDelivery(t, hostileItem(2, strings.Repeat("x", 3<<20)))

	for _, tc := range []struct {
		name       string
		body       []byte
		wantStatus int
		wantStored int // messages added by this delivery
	}{
		{"empty body", nil, http.StatusBadRequest, 0},
		{"not json", []byte("hello, webhook"), http.StatusBadRequest, 0},
		{"truncated json", hostileDelivery(t, hostileItem(3, "cut"))[:60], http.StatusBadRequest, 0},
		{"json array", []byte(`[{"object":"instagram","entry":[]}]`), http.StatusBadRequest, 0},
		{"json null", []byte(`null`), http.StatusBadRequest, 0},
		{"object page", []byte(`{"object":"page","entry":[]}`), http.StatusBadRequest, 0},
		{"missing entry", []byte(`{"object":"instagram"}`), http.StatusBadRequest, 0},
		{"entry not a list", []byte(`{"object":"instagram","entry":{"id":"1"}}`), http.StatusBadRequest, 0},
		{"missing sender", hostileDelivery(t, hostileWithout(hostileItem(4, "no sender"), "sender")), http.StatusOK, 0},
		{"missing recipient", hostileDelivery(t, hostileWithout(hostileItem(5, "no recipient"), "recipient")), http.StatusOK, 0},
		{"missing mid", hostileDelivery(t, hostileWithout(hostileItem(6, "no mid"), "message.mid")), http.StatusOK, 0},
		{"missing timestamp", hostileDelivery(t, hostileWithout(hostileItem(7, "no time"), "timestamp")), http.StatusOK, 0},
		{"timestamp numeric string", hostileDelivery(t, hostileWith(hostileItem(8, "string time"), "timestamp", "1763770000123")), http.StatusOK, 1},
		{"timestamp word", hostileDelivery(t, hostileWith(hostileItem(9, "word time"), "timestamp", "yesterday")), http.StatusOK, 0},
		{"timestamp ISO 8601", hostileDelivery(t, hostileWith(hostileItem(14, "iso time"), "timestamp", "2021-09-08T06:34:04.000Z")), http.StatusOK, 1},
		{"timestamp negative", hostileDelivery(t, hostileWith(hostileItem(10, "negative time"), "timestamp", -5)), http.StatusOK, 0},
		{"text not a string", hostileDelivery(t, hostileWith(hostileItem(11, ""), "message", map[string]any{"mid": "mid.hostile.x", "text": 42}), hostileItem(15, "good sibling")), http.StatusOK, 1},
		{"invalid utf-8", invalidUTF8, http.StatusBadRequest, 0},
		{"nested beyond the decoder's limit", deepInEntry, http.StatusBadRequest, 0},
		{"deeply nested unknown field", deepElsewhere, http.StatusOK, 0},
		{"1000-message batch", hostileDelivery(t, batch...), http.StatusOK, 1000},
		{"same batch again", hostileDelivery(t, batch...), http.StatusOK, 0},
		{"same mid twice in one batch", hostileDelivery(t, hostileItem(12, "first copy"), hostileItem(12, "second copy")), http.StatusOK, 1},
		{"500th of 1000 malformed", hostileDelivery(t, poisoned...), http.StatusOK, 999},
		{"1 MiB text", hostileDelivery(t, hostileItem(13, big)), http.StatusOK, 1},
		{"over the body limit", tooBig, http.StatusRequestEntityTooLarge, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(ta.messages())
			code, body := ta.post(tc.body)
			if code != tc.wantStatus {
				t.Fatalf("status: got %d (%.200s), want %d", code, body, tc.wantStatus)
			}
			if got := len(ta.messages()) - before; got != tc.wantStored {
				t.Errorf("stored: got %d, want %d", got, tc.wantStored)
			}
			if code != http.StatusOK {
				var e struct{ Error string }
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
					t.Errorf("error body: got %.200q, want {\"error\": ...}", body)
				}
			}
		})
	}

	// What was stored is what was sent.
	m, err := ta.store.GetByMID(context.Background(), "mid.hostile.12")
	if err != nil || m.MessageText != "first copy" {
		t.Errorf("repeated mid: got %q, %v; want the first copy", m.MessageText, err)
	}
	m, err = ta.store.GetByMID(context.Background(), "mid.hostile.13")
	if err != nil || m.MessageText != big {
		t.Errorf("1 MiB text: got %d bytes, %v; want it intact (%d bytes)", len(m.MessageText), err, len(big))
	}
	m, err = ta.store.GetByMID(context.Background(), "mid.hostile.8")
	if want := time.UnixMilli(1763770000123).UTC(); err != nil || !m.Timestamp.Equal(want) {
		t.Errorf("string timestamp: got %s, %v; want %s", m.Timestamp, err, want)
	}
	if _, err := ta.store.GetByMID(context.Background(), "mid.hostile.20499"); err == nil {
		t.Errorf("poisoned batch: its item without a mid was stored under that mid")
	}
	for _, mid := range []string{"mid.hostile.20000", "mid.hostile.20498", "mid.hostile.20500", "mid.hostile.20999"} {
		if _, err := ta.store.GetByMID(context.Background(), mid); err != nil {
			t.Errorf("poisoned batch: %s around the bad item: %v, want it stored", mid, err)
		}
	}
	m, err = ta.store.GetByMID(context.Background(), "mid.hostile.14")
	if want := time.Date(2021, 9, 8, 6, 34, 4, 0, time.UTC); err != nil || !m.Timestamp.Equal(want) {
		t.Errorf("ISO 8601 timestamp: got %s, %v; want %s", m.Timestamp, err, want)
	}
	// The service is still up and answering.
	if code, _ := ta.get(ta.base + "/healthz"); code != http.StatusOK {
		t.Errorf("healthz after the hostile deliveries: got %d, want 200", code)
	}
}

// TestHostileBadSignatures stores nothing for a delivery without, or with
// a wrong, signature.
func TestHostileBadSignatures(t *testing.T) {
	ta := startApp(t, testConfig(t))
	body := hostileDelivery(t, hostileItem(1, "hello"))
	for _, tc := range []struct {
		name, sig string
		want      int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"not hex", "sha256=zz", http.StatusForbidden},
		{"wrong key", "sha256=" + strings.Repeat("ab", 32), http.StatusForbidden},
		{"sha1 only", "sha1=" + strings.Repeat("ab", 20), http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := ta.postWithSig(body, tc.sig); code != tc.want {
				t.Errorf("status: got %d (%s), want %d", code, body, tc.want)
			}
		})
	}
	if got := len(ta.messages()); got != 0 {
		t.Errorf("stored: got %d, want 0", got)
	}
}

// TestHostileLongTextInCRM sends a 1 MiB text to a service mirroring into
// a real CRM: SQLite keeps it whole, the CRM's TEXT column gets it cut to
// 65535 bytes at a character boundary, and the message is marked degraded.
func TestHostileLongTextInCRM(t *testing.T) {
	crm := mysqltest.New(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	ta := startApp(t, cfg)
	big := "a" + strings.Repeat("€", 349_525) // 1 MiB; a cut at byte 65535 falls inside a €
	if code, body := ta.post(hostileDelivery(t, hostileItem(1, big))); code != http.StatusOK {
		t.Fatalf("post: got %d %s", code, body)
	}
	var m domain.Message
	eventually(t, 10*time.Second, "the message mirrored", func() bool {
		var err error
		m, err = ta.store.GetByMID(context.Background(), "mid.hostile.1")
		return err == nil && m.MirrorStatus == domain.MirrorMirrored
	})
	if m.MessageText != big || !m.MirrorDegraded {
		t.Errorf("local copy: got %d bytes, degraded %v; want %d bytes, degraded", len(m.MessageText), m.MirrorDegraded, len(big))
	}
	rows := crm.Rows(t)
	if len(rows) != 1 {
		t.Fatalf("crm rows: got %d, want 1", len(rows))
	}
	got := rows[0].Message
	if want := "a" + strings.Repeat("€", 21_844); got != want {
		t.Errorf("crm text: got %d bytes (valid utf-8: %v), want %d bytes", len(got), utf8.ValidString(got), len(want))
	}
}
