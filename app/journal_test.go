package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/instagram"
)

// deliveryList is the body of GET /admin/deliveries.
type deliveryList struct {
	Deliveries []domain.Delivery `json:"deliveries"`
	NextCursor string            `json:"next_cursor"`
}

func (ta *testApp) deliveries(query string) deliveryList {
	ta.t.Helper()
	code, body := ta.adminDo(http.MethodGet, "/admin/deliveries"+query, testAdminToken, nil)
	if code != http.StatusOK {
		ta.t.Fatalf("GET /admin/deliveries%s: %d %s", query, code, body)
	}
	var out deliveryList
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		ta.t.Fatalf("deliveries: %v in %s", err, body)
	}
	return out
}

// TestJournalKeepsTheExactBytesAndSignature: every delivery answered 200
// is journaled with its exact bytes and signature header, and what it
// yielded; the raw bytes re-post verifiably, as a duplicate.
func TestJournalKeepsTheExactBytesAndSignature(t *testing.T) {
	ta := startApp(t, testConfig(t))
	body := sample(t, "inbound_unicode_escaped.json")
	sig := instagram.Sign([]byte(testAppSecret), body)
	if code, resp := ta.postWithSig(body, sig); code != http.StatusOK {
		t.Fatalf("post: %d %s", code, resp)
	}
	if code, _ := ta.post(body); code != http.StatusOK {
		t.Fatalf("redelivery: %d", code)
	}
	list := ta.deliveries("")
	if len(list.Deliveries) != 2 {
		t.Fatalf("journal: got %d deliveries, want 2", len(list.Deliveries))
	}
	first, second := list.Deliveries[1], list.Deliveries[0] // newest first
	if first.Stored != 1 || first.Duplicates != 0 || second.Stored != 0 || second.Duplicates != 1 {
		t.Errorf("yields: got first %+v, second %+v; want 1 stored, then 1 duplicate", first, second)
	}
	if first.Items["message"] != 1 || first.Size != len(body) || first.Signature != sig {
		t.Errorf("first record: got %+v, want items message=1, size %d, the signature", first, len(body))
	}

	// The raw bytes, byte for byte, with the original signature header.
	req, _ := http.NewRequest(http.MethodGet, ta.admin+"/admin/deliveries/"+strconv.FormatInt(first.ID, 10)+"/raw", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := ta.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(raw, body) {
		t.Fatalf("raw: got %d, %d bytes equal=%v; want 200 and the exact %d bytes", resp.StatusCode, len(raw), bytes.Equal(raw, body), len(body))
	}
	if got := resp.Header.Get("X-Hub-Signature-256"); got != sig {
		t.Fatalf("raw's signature header: got %q, want %q", got, sig)
	}
	// Re-posted as is, it verifies, and is a duplicate.
	code, out := ta.postWithSig(raw, resp.Header.Get("X-Hub-Signature-256"))
	if code != http.StatusOK || out != "{\"duplicates\":1,\"stored\":0,\"unsent\":0}\n" {
		t.Fatalf("re-post of the raw bytes: %d %s", code, out)
	}
	code, one := ta.adminDo(http.MethodGet, "/admin/deliveries/"+strconv.FormatInt(first.ID, 10), testAdminToken, nil)
	var rec domain.Delivery
	if code != http.StatusOK || json.Unmarshal([]byte(one), &rec) != nil || rec.ID != first.ID || rec.Stored != 1 {
		t.Fatalf("GET one: %d %s", code, one)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(one), &fields); err != nil {
		t.Fatal(err)
	}
	if _, ok := fields["body"]; ok || bytes.Contains([]byte(one), body[10:40]) {
		t.Errorf("the JSON record carries the body; it should only describe it: %s", one)
	}
	for path, want := range map[string]int{
		"/admin/deliveries/999999":     http.StatusNotFound,
		"/admin/deliveries/999999/raw": http.StatusNotFound,
		"/admin/deliveries/x":          http.StatusBadRequest,
		"/admin/deliveries?cursor=zz":  http.StatusBadRequest,
		"/admin/deliveries?since=x":    http.StatusBadRequest,
	} {
		if code, body := ta.adminDo(http.MethodGet, path, testAdminToken, nil); code != want {
			t.Errorf("GET %s: got %d %s, want %d", path, code, body, want)
		}
	}
	if code, _ := ta.adminDo(http.MethodGet, "/admin/deliveries", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /admin/deliveries without a token: got %d, want 401", code)
	}
}

// TestJournalPaging pages the journal newest first with a cursor and a
// time window.
func TestJournalPaging(t *testing.T) {
	ta := startApp(t, testConfig(t))
	body := sample(t, "reaction_and_read.json")
	for range 5 {
		if code, _ := ta.post(body); code != http.StatusOK {
			t.Fatal("post")
		}
	}
	page1 := ta.deliveries("?limit=2")
	page2 := ta.deliveries("?limit=2&cursor=" + page1.NextCursor)
	page3 := ta.deliveries("?limit=2&cursor=" + page2.NextCursor)
	var ids []int64
	for _, p := range []deliveryList{page1, page2, page3} {
		for _, d := range p.Deliveries {
			ids = append(ids, d.ID)
		}
	}
	if len(ids) != 5 || page3.NextCursor != "" {
		t.Fatalf("paged ids: got %v (last cursor %q), want 5 and an end", ids, page3.NextCursor)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Fatalf("paged ids: got %v, want newest first", ids)
		}
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if got := ta.deliveries("?since=" + future).Deliveries; len(got) != 0 {
		t.Errorf("since an hour ahead: got %d, want 0", len(got))
	}
	if got := ta.deliveries("?until=" + future).Deliveries; len(got) != 5 {
		t.Errorf("until an hour ahead: got %d, want 5", len(got))
	}
}

// TestReplayStoresExactlyWhatAnOlderParserMissed: a delivery journaled
// when the parser ignored its messages is replayed by the current parser,
// and exactly the missing messages appear, once; a second replay stores
// nothing.
func TestReplayStoresExactlyWhatAnOlderParserMissed(t *testing.T) {
	ta := startApp(t, testConfig(t))
	body := sample(t, "batch_two_entries.json")
	d, err := instagram.Parse(body)
	if err != nil || len(d.Messages) < 2 {
		t.Fatalf("parse the sample: %v, %d messages", err, len(d.Messages))
	}
	// What an older parser made of it: the first message only, the rest
	// ignored; the journal kept the whole body all the same.
	kept := d.Messages[:1]
	for i := range kept {
		kept[i].MirrorStatus = domain.MirrorDisabled
	}
	res, err := ta.store.Save(context.Background(), domain.Batch{Messages: kept,
		Delivery: &domain.Delivery{Body: body, Signature: instagram.Sign([]byte(testAppSecret), body), Items: map[string]int{"message": 1}}})
	if err != nil || len(res.New) != 1 {
		t.Fatalf("journal the old delivery: %v, %+v", err, res)
	}
	missing := len(d.Messages) - 1
	before := len(ta.messages())

	var got replayResult
	code, out := ta.adminDo(http.MethodPost, "/admin/deliveries/replay", testAdminToken, map[string]any{"ids": []int64{res.DeliveryID}})
	if code != http.StatusOK || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("replay: %d %s", code, out)
	}
	if got.Replayed != 1 || got.Stored != missing || got.Duplicates != 1 {
		t.Fatalf("replay: got %+v, want 1 replayed, %d stored, 1 duplicate", got, missing)
	}
	if n := len(ta.messages()); n != before+missing {
		t.Fatalf("messages after replay: got %d, want %d", n, before+missing)
	}
	// Again, by time window: nothing new.
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	code, out = ta.adminDo(http.MethodPost, "/admin/deliveries/replay?since="+since, testAdminToken, nil)
	if code != http.StatusOK || json.Unmarshal([]byte(out), &got) != nil || got.Replayed != 1 || got.Stored != 0 {
		t.Fatalf("second replay: %d %s, want 1 replayed and nothing stored", code, out)
	}
	if n := len(ta.messages()); n != before+missing {
		t.Fatalf("messages after the second replay: got %d, want %d", n, before+missing)
	}
	for _, tc := range []struct {
		body any
		want int
	}{
		{nil, http.StatusBadRequest},
		{map[string]any{"ids": []int64{res.DeliveryID}, "since": since}, http.StatusBadRequest},
		{map[string]any{"ids": []int64{987654}}, http.StatusNotFound},
		{map[string]any{"since": "yesterday"}, http.StatusBadRequest},
	} {
		if code, out := ta.adminDo(http.MethodPost, "/admin/deliveries/replay", testAdminToken, tc.body); code != tc.want {
			t.Errorf("replay %v: got %d %s, want %d", tc.body, code, out, tc.want)
		}
	}
}

// TestJournalOffAndPurge: DELIVERY_RETENTION=0 journals nothing; a short
// retention purges old records in the background.
func TestJournalOffAndPurge(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.DeliveryRetention = 0
		ta := startApp(t, cfg)
		if code, _ := ta.post(sample(t, "inbound_text.json")); code != http.StatusOK {
			t.Fatal("post")
		}
		if got := ta.deliveries("").Deliveries; len(got) != 0 {
			t.Fatalf("journal with retention 0: got %d records, want none", len(got))
		}
		if n := len(ta.messages()); n != 1 {
			t.Fatalf("messages: got %d, want 1", n)
		}
	})
	t.Run("purged", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.DeliveryRetention = 2 * time.Second
		ta := startApp(t, cfg)
		if code, _ := ta.post(sample(t, "inbound_text.json")); code != http.StatusOK {
			t.Fatal("post")
		}
		if got := ta.deliveries("").Deliveries; len(got) != 1 {
			t.Fatalf("journal: got %d records, want 1", len(got))
		}
		eventually(t, 20*time.Second, "the old record purged", func() bool { return len(ta.deliveries("").Deliveries) == 0 })
		if n := len(ta.messages()); n != 1 {
			t.Fatalf("messages after the purge: got %d, want 1 (only the journal is purged)", n)
		}
	})
}

// TestReplayBringsInAStandbyMessageAnOlderParserIgnored: the journal kept
// a standby delivery that a parser without standby support answered
// {"stored":0}; replayed by the current parser, its message appears, once,
// marked standby.
func TestReplayBringsInAStandbyMessageAnOlderParserIgnored(t *testing.T) {
	ta := startApp(t, testConfig(t))
	body := sample(t, "standby_message.json")
	res, err := ta.store.Save(context.Background(), domain.Batch{
		Delivery: &domain.Delivery{Body: body, Signature: instagram.Sign([]byte(testAppSecret), body), Items: map[string]int{}}})
	if err != nil || res.DeliveryID == 0 || len(ta.messages()) != 0 {
		t.Fatalf("journal the ignored delivery: %v, %+v", err, res)
	}
	for i, want := range []int{1, 0} {
		var got replayResult
		code, out := ta.adminDo(http.MethodPost, "/admin/deliveries/replay", testAdminToken, map[string]any{"ids": []int64{res.DeliveryID}})
		if code != http.StatusOK || json.Unmarshal([]byte(out), &got) != nil || got.Stored != want {
			t.Fatalf("replay %d: %d %s, want %d stored", i+1, code, out, want)
		}
	}
	msgs := ta.messages()
	if len(msgs) != 1 || !msgs[0].Standby || msgs[0].SenderID != "5582201937461777" {
		t.Fatalf("after the replays: got %+v, want the one standby message", msgs)
	}
}

// TestEditUpdatesTheStoredText: a message_edit of a stored mid changes its
// text, keeps the original and the count, and is not mirrored again; an
// edit of an unknown mid stores nothing.
func TestEditUpdatesTheStoredText(t *testing.T) {
	ta := startApp(t, testConfig(t))
	edit := sample(t, "message_edit.json")
	if code, _ := ta.post(edit); code != http.StatusOK {
		t.Fatal("edit of an unknown mid: want 200")
	}
	if n := len(ta.messages()); n != 0 {
		t.Fatalf("an edit of an unknown mid stored %d messages, want none", n)
	}
	d, err := instagram.Parse(edit)
	if err != nil || len(d.Edits) != 1 {
		t.Fatalf("parse the edit: %v, %+v", err, d)
	}
	mid := d.Edits[0].MID
	original := []byte(`{"object":"instagram","entry":[{"id":"17841400000000001","time":1763771000500,"messaging":[{"sender":{"id":"5582201937461123"},"recipient":{"id":"17841400000000001"},"timestamp":1763771000123,"message":{"mid":"` + mid + `","text":"Hi! Do you ship to Kyiv?"}}]}]}`)
	if code, out := ta.post(original); code != http.StatusOK || !strings.Contains(out, `"stored":1`) {
		t.Fatalf("the original: %d %s", code, out)
	}
	for range 2 { // a redelivered edit changes nothing more
		if code, _ := ta.post(edit); code != http.StatusOK {
			t.Fatal("edit: want 200")
		}
	}
	m, err := ta.store.GetByMID(context.Background(), mid)
	if err != nil {
		t.Fatal(err)
	}
	if m.MessageText != d.Edits[0].Text || m.OriginalText == nil || *m.OriginalText != "Hi! Do you ship to Kyiv?" || m.EditCount != 1 {
		t.Errorf("after the edit: text %q, original %v, count %d; want %q, the original kept, 1", m.MessageText, m.OriginalText, m.EditCount, d.Edits[0].Text)
	}
	list := ta.deliveries("")
	if got := list.Deliveries[0].Edited; got != 0 {
		t.Errorf("the redelivered edit's journal record: edited %d, want 0", got)
	}
	if got := list.Deliveries[1].Edited; got != 1 {
		t.Errorf("the edit's journal record: edited %d, want 1", got)
	}
}

// TestReplayAppliesAnEditAnOlderParserIgnored: a message_edit delivery
// journaled when the parser did not apply edits is replayed, and the
// stored text changes, once.
func TestReplayAppliesAnEditAnOlderParserIgnored(t *testing.T) {
	ta := startApp(t, testConfig(t))
	edit := sample(t, "message_edit.json")
	d, err := instagram.Parse(edit)
	if err != nil || len(d.Edits) != 1 {
		t.Fatalf("parse the edit: %v, %+v", err, d)
	}
	mid := d.Edits[0].MID
	original := []byte(`{"object":"instagram","entry":[{"id":"17841400000000001","time":1763771000500,"messaging":[{"sender":{"id":"5582201937461123"},"recipient":{"id":"17841400000000001"},"timestamp":1763771000123,"message":{"mid":"` + mid + `","text":"Hi! Do you ship to Kyiv?"}}]}]}`)
	if code, _ := ta.post(original); code != http.StatusOK {
		t.Fatal("the original: want 200")
	}
	res, err := ta.store.Save(context.Background(), domain.Batch{
		Delivery: &domain.Delivery{Body: edit, Signature: instagram.Sign([]byte(testAppSecret), edit), Items: map[string]int{"edit": 1}}})
	if err != nil || res.DeliveryID == 0 {
		t.Fatalf("journal the unapplied edit: %v, %+v", err, res)
	}
	for i, want := range []int{1, 0} {
		var got replayResult
		code, out := ta.adminDo(http.MethodPost, "/admin/deliveries/replay", testAdminToken, map[string]any{"ids": []int64{res.DeliveryID}})
		if code != http.StatusOK || json.Unmarshal([]byte(out), &got) != nil || got.Edited != want {
			t.Fatalf("replay %d: %d %s, want %d edited", i+1, code, out, want)
		}
	}
	m, err := ta.store.GetByMID(context.Background(), mid)
	if err != nil || m.MessageText != d.Edits[0].Text || m.EditCount != 1 {
		t.Fatalf("after the replays: %+v, %v; want the edited text, one edit", m, err)
	}
}
