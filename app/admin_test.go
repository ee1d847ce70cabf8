package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/mysqltest"
)

// bizID is the business account of the deliveries these tests make up.
const bizID = "17841400000000001"

// dm is one direct message of a made-up webhook delivery.
type dm struct {
	mid, user, text string
	at              time.Time
	outbound        bool
}

// deliveryOf renders msgs as one Meta webhook delivery.
func deliveryOf(t testing.TB, msgs ...dm) []byte {
	t.Helper()
	type party struct {
		ID string `json:"id"`
	}
	type message struct {
		MID    string `json:"mid"`
		Text   string `json:"text,omitempty"`
		IsEcho bool   `json:"is_echo,omitempty"`
	}
	type item struct {
		Sender    party   `json:"sender"`
		Recipient party   `json:"recipient"`
		Timestamp int64   `json:"timestamp"`
		Message   message `json:"message"`
	}
	items := make([]item, len(msgs))
	for i, m := range msgs {
		it := item{Sender: party{m.user}, Recipient: party{bizID}, Timestamp: m.at.UnixMilli(), Message: message{MID: m.mid, Text: m.text}}
		if m.outbound {
			it.Sender, it.Recipient, it.Message.IsEcho = party{bizID}, party{m.user}, true
		}
		items[i] = it
	}
	b, err := json.Marshal(map[string]any{
		"object": "instagram",
		"entry":  []any{map[string]any{"id": bizID, "time": time.Now().UnixMilli(), "messaging": items}},
	})
	if err != nil {
		t.Fatalf("marshal delivery: %v", err)
	}
	return b
}

// dmSeries makes n distinct messages one second apart from start: users
// u0..u4 in turn, every fourth one outbound.
func dmSeries(prefix string, n int, start time.Time) []dm {
	out := make([]dm, n)
	for i := range out {
		out[i] = dm{
			mid:      fmt.Sprintf("%s-%d", prefix, i),
			user:     fmt.Sprintf("u%d", i%5),
			text:     fmt.Sprintf("text of %s number %d", prefix, i),
			at:       start.Add(time.Duration(i) * time.Second),
			outbound: i%4 == 3,
		}
	}
	return out
}

// postDMs stores msgs through the webhook, in signed deliveries of at most
// 50 messages, in order.
func postDMs(t testing.TB, ta *testApp, msgs []dm) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(len(msgs), 50)
		if code, body := ta.post(deliveryOf(t, msgs[:n]...)); code != http.StatusOK {
			t.Fatalf("post delivery: got %d %s, want 200", code, body)
		}
		msgs = msgs[n:]
	}
}

// opsResp is an HTTP answer with its headers.
type opsResp struct {
	code   int
	header http.Header
	body   []byte
}

var opsClient = &http.Client{Timeout: 30 * time.Second}

// opsDo sends one request with the given headers and raw body.
func opsDo(t testing.TB, method, url string, header map[string]string, body []byte) opsResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := opsClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, req.URL.Path, err)
	}
	return opsResp{code: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// adminCall calls the admin API with the right token and a JSON body.
func adminCall(t testing.TB, ta *testApp, method, path string, body any) opsResp {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	return opsDo(t, method, ta.admin+path, bearer(testAdminToken), raw)
}

// errorOf checks that r is a JSON error body, {"error": "..."} and nothing
// else, and returns the sentence.
func errorOf(t testing.TB, r opsResp) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type: got %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	msg, ok := m["error"].(string)
	if !ok || len(m) != 1 {
		t.Fatalf("error body: got %s, want exactly {\"error\": \"...\"}", r.body)
	}
	return msg
}

// decodeAs decodes a 2xx JSON body into a T.
func decodeAs[T any](t testing.TB, r opsResp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// messagePage is the body of GET /admin/messages.
type messagePage struct {
	Messages   []domain.Message `json:"messages"`
	NextCursor *string          `json:"next_cursor"`
}

// listPage fetches one page of GET /admin/messages?query.
func listPage(t testing.TB, ta *testApp, query string) messagePage {
	t.Helper()
	r := adminCall(t, ta, http.MethodGet, "/admin/messages?"+query, nil)
	if r.code != http.StatusOK {
		t.Fatalf("list %q: got %d %s, want 200", query, r.code, r.body)
	}
	p := decodeAs[messagePage](t, r)
	if p.Messages == nil || p.NextCursor == nil {
		t.Fatalf("list %q: got %s, want both messages and next_cursor", query, r.body)
	}
	return p
}

// listAll pages through GET /admin/messages?query with limit, checking
// every page on the way, and returns the messages in the order served.
func listAll(t testing.TB, ta *testApp, query string, limit int) []domain.Message {
	t.Helper()
	var all []domain.Message
	cursor := ""
	for range 10000 {
		q := query + "&limit=" + strconv.Itoa(limit)
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		p := listPage(t, ta, q)
		if len(p.Messages) > limit {
			t.Fatalf("page of %q: got %d messages, want at most %d", q, len(p.Messages), limit)
		}
		if *p.NextCursor != "" && len(p.Messages) != limit {
			t.Fatalf("page of %q: got %d messages and a next cursor, want a full page of %d", q, len(p.Messages), limit)
		}
		all = append(all, p.Messages...)
		if *p.NextCursor == "" {
			return all
		}
		cursor = *p.NextCursor
	}
	t.Fatalf("list %q: paging did not end", query)
	return nil
}

func mids(msgs []domain.Message) []string {
	out := make([]string, len(msgs))
	for i := range msgs {
		out[i] = msgs[i].MID()
	}
	return out
}

func TestAdminAuthMatrix(t *testing.T) {
	ta := startApp(t, testConfig(t))
	if code, body := ta.post(sample(t, "inbound_text.json")); code != http.StatusOK {
		t.Fatalf("seed: got %d %s, want 200", code, body)
	}
	unsetCfg := testConfig(t)
	unsetCfg.AdminToken = ""
	unset := startApp(t, unsetCfg)

	newMsg := []byte(`{"sender_id":"cust-9","recipient_id":"` + bizID + `","direction":"inbound","message_text":"hello"}`)
	routes := []struct {
		name, method, path string
		body               []byte
		code               int    // with the right token
		err                string // with the right token, when code is an error
	}{
		{"list", http.MethodGet, "/admin/messages", nil, http.StatusOK, ""},
		{"get", http.MethodGet, "/admin/messages/1", nil, http.StatusOK, ""},
		{"post", http.MethodPost, "/admin/messages", newMsg, http.StatusCreated, ""},
		{"post invalid", http.MethodPost, "/admin/messages", []byte(`{}`), http.StatusBadRequest, "invalid message_text: must not be empty"},
		{"stats", http.MethodGet, "/admin/mirror/stats", nil, http.StatusOK, ""},
		{"resync", http.MethodPost, "/admin/mirror/resync", nil, http.StatusConflict, "crm mirror is disabled (CRM_MYSQL_ENABLED=false)"},
		{"unknown admin path", http.MethodGet, "/admin/nope", nil, http.StatusNotFound, "not found: no endpoint at this path"},
		{"path below a message", http.MethodGet, "/admin/messages/1/history", nil, http.StatusNotFound, "not found: no endpoint at this path"},
		{"bad message id", http.MethodGet, "/admin/messages/abc", nil, http.StatusBadRequest, "invalid id: want a positive whole number"},
		{"unknown path", http.MethodGet, "/", nil, http.StatusNotFound, "not found: no endpoint at this path"},
		{"wrong method", http.MethodDelete, "/admin/messages", nil, http.StatusMethodNotAllowed, "method not allowed on this path"},
	}
	const (
		missing  = "missing bearer token: send Authorization: Bearer <ADMIN_TOKEN>"
		invalid  = "invalid bearer token"
		disabled = "admin API disabled: ADMIN_TOKEN is not set"
	)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+testAdminToken))
	auths := []struct {
		name   string
		app    *testApp
		header string // Authorization, "" = none
		code   int    // 0: the route's own answer
		err    string
	}{
		{"no header", ta, "", http.StatusUnauthorized, missing},
		{"wrong token", ta, "Bearer not-the-token", http.StatusUnauthorized, invalid},
		{"token with a suffix", ta, "Bearer " + testAdminToken + "x", http.StatusUnauthorized, invalid},
		{"basic scheme", ta, basic, http.StatusUnauthorized, missing},
		{"bearer without token", ta, "Bearer ", http.StatusUnauthorized, missing},
		{"token without scheme", ta, testAdminToken, http.StatusUnauthorized, missing},
		{"right token", ta, "Bearer " + testAdminToken, 0, ""},
		{"right token, lower-case scheme", ta, "bearer " + testAdminToken, 0, ""},
		{"token unset, no header", unset, "", http.StatusForbidden, disabled},
		{"token unset, a bearer token", unset, "Bearer " + testAdminToken, http.StatusForbidden, disabled},
		{"token unset, empty bearer", unset, "Bearer ", http.StatusForbidden, disabled},
	}
	for _, au := range auths {
		for _, rt := range routes {
			t.Run(au.name+"/"+rt.name, func(t *testing.T) {
				h := map[string]string{}
				if au.header != "" {
					h["Authorization"] = au.header
				}
				r := opsDo(t, rt.method, au.app.admin+rt.path, h, rt.body)
				wantCode, wantErr := au.code, au.err
				if wantCode == 0 {
					wantCode, wantErr = rt.code, rt.err
				}
				if r.code != wantCode {
					t.Fatalf("status: got %d %s, want %d", r.code, r.body, wantCode)
				}
				if wantErr == "" {
					if !json.Valid(r.body) || bytes.Contains(r.body, []byte(`"error"`)) {
						t.Errorf("body: got %s, want a JSON answer", r.body)
					}
					return
				}
				if got := errorOf(t, r); got != wantErr {
					t.Errorf("error: got %q, want %q", got, wantErr)
				}
				if wantCode == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("WWW-Authenticate: got %q, want a Bearer challenge", r.header.Get("WWW-Authenticate"))
				}
				if wantCode == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
					t.Errorf("405 without an Allow header")
				}
			})
		}
	}
	// Refused calls changed nothing: the two right-token POSTs are the only
	// messages besides the seed.
	if got := len(ta.messages()); got != 3 {
		t.Errorf("stored messages: got %d, want 3 (seed + 2 accepted POSTs)", got)
	}
	if got := len(unset.messages()); got != 0 {
		t.Errorf("stored on the app without a token: got %d, want 0", got)
	}
}

func TestAdminBadRequests(t *testing.T) {
	ta := startApp(t, testConfig(t))
	mirrorCfg := testConfig(t)
	blackholeCRM(t, &mirrorCfg)
	on := startApp(t, mirrorCfg)

	const (
		badTime   = " want an RFC 3339 time such as 2026-11-21T00:00:00Z"
		badLimit  = "invalid limit: want a whole number from 1 to 500"
		badStatus = "invalid mirror_status: want pending, mirrored, dropped, failed or disabled"
		badID     = "invalid id: want a positive whole number"
	)
	notOurs := base64.RawURLEncoding.EncodeToString([]byte("x:12"))
	cases := []struct {
		name, method, path string
		app                *testApp
		body               string
		code               int
		err                string
	}{
		{"since not a time", "GET", "/admin/messages?since=yesterday", ta, "", 400, "invalid since:" + badTime},
		{"until not a time", "GET", "/admin/messages?until=2026-13-01T00:00:00Z", ta, "", 400, "invalid until:" + badTime},
		{"since a date only", "GET", "/admin/messages?since=2026-11-01", ta, "", 400, "invalid since:" + badTime},
		{"limit negative", "GET", "/admin/messages?limit=-3", ta, "", 400, badLimit},
		{"limit zero", "GET", "/admin/messages?limit=0", ta, "", 400, badLimit},
		{"limit over 500", "GET", "/admin/messages?limit=501", ta, "", 400, badLimit},
		{"limit not a number", "GET", "/admin/messages?limit=ten", ta, "", 400, badLimit},
		{"limit a fraction", "GET", "/admin/messages?limit=1.5", ta, "", 400, badLimit},
		{"direction", "GET", "/admin/messages?direction=sideways", ta, "", 400, "invalid direction: want inbound or outbound"},
		{"mirror_status", "GET", "/admin/messages?mirror_status=x", ta, "", 400, badStatus},
		{"cursor garbage", "GET", "/admin/messages?cursor=bogus!", ta, "", 400, "invalid cursor: not a cursor this service handed out"},
		{"cursor not ours", "GET", "/admin/messages?cursor=" + notOurs, ta, "", 400, "invalid cursor: not a cursor this service handed out"},
		{"id not a number", "GET", "/admin/messages/abc", ta, "", 400, badID},
		{"id zero", "GET", "/admin/messages/0", ta, "", 400, badID},
		{"id negative", "GET", "/admin/messages/-4", ta, "", 400, badID},
		{"id missing", "GET", "/admin/messages/999999", ta, "", 404, "message 999999 not found"},
		{"post not JSON", "POST", "/admin/messages", ta, "hello", 400, "invalid JSON body: not a JSON object of the expected shape"},
		{"post empty", "POST", "/admin/messages", ta, "", 400, "invalid JSON body: not a JSON object of the expected shape"},
		{"post unknown field", "POST", "/admin/messages", ta, `{"sender_id":"a","colour":"red"}`, 400, `invalid JSON body: unknown field "colour"`},
		{"post wrong type", "POST", "/admin/messages", ta, `{"sender_id":5}`, 400, "invalid JSON body: field sender_id has the wrong type"},
		{"post bad timestamp", "POST", "/admin/messages", ta, `{"timestamp":"yesterday"}`, 400, "invalid JSON body: timestamp must be an RFC 3339 time"},
		{"post two objects", "POST", "/admin/messages", ta, `{} {}`, 400, "invalid JSON body: trailing data"},
		{"post no text", "POST", "/admin/messages", ta, `{"sender_id":"a","recipient_id":"b","direction":"inbound"}`, 400, "invalid message_text: must not be empty"},
		{"post blank text", "POST", "/admin/messages", ta, `{"sender_id":"a","recipient_id":"b","direction":"inbound","message_text":"  "}`, 400, "invalid message_text: must not be empty"},
		{"post no sender", "POST", "/admin/messages", ta, `{"recipient_id":"b","direction":"inbound","message_text":"t"}`, 400, "invalid message: sender_id is required"},
		{"post no recipient", "POST", "/admin/messages", ta, `{"sender_id":"a","direction":"inbound","message_text":"t"}`, 400, "invalid message: recipient_id is required"},
		{"post bad direction", "POST", "/admin/messages", ta, `{"sender_id":"a","recipient_id":"b","direction":"sideways","message_text":"t"}`, 400, "invalid message: direction must be inbound or outbound"},
		{"post empty mid", "POST", "/admin/messages", ta, `{"sender_id":"a","recipient_id":"b","direction":"inbound","message_text":"t","instagram_message_id":""}`, 400, "invalid message: instagram_message_id must not be empty when given"},
		{"post id too long", "POST", "/admin/messages", ta, `{"sender_id":"` + strings.Repeat("9", 101) + `","recipient_id":"b","direction":"inbound","message_text":"t"}`, 400, "invalid message: an id is longer than allowed"},
		{"resync with the mirror off", "POST", "/admin/mirror/resync", ta, "", 409, "crm mirror is disabled (CRM_MYSQL_ENABLED=false)"},
		{"resync since (query)", "POST", "/admin/mirror/resync?since=yesterday", on, "", 400, "invalid since:" + badTime},
		{"resync until (body)", "POST", "/admin/mirror/resync", on, `{"until":"soon"}`, 400, "invalid until:" + badTime},
		{"resync mirror_status", "POST", "/admin/mirror/resync", on, `{"mirror_status":"x"}`, 400, badStatus},
		{"resync unknown field", "POST", "/admin/mirror/resync", on, `{"everything":true}`, 400, `invalid JSON body: unknown field "everything"`},
		{"stats wrong method", "POST", "/admin/mirror/stats", ta, "", 405, "method not allowed on this path"},
		{"unknown route", "GET", "/admin/mirror/everything", ta, "", 404, "not found: no endpoint at this path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "" || c.method == "POST" {
				body = []byte(c.body)
			}
			r := opsDo(t, c.method, c.app.admin+c.path, bearer(testAdminToken), body)
			if r.code != c.code {
				t.Fatalf("status: got %d %s, want %d", r.code, r.body, c.code)
			}
			if got := errorOf(t, r); got != c.err {
				t.Errorf("error: got %q, want %q", got, c.err)
			}
		})
	}
	if got := len(ta.messages()); got != 0 {
		t.Errorf("stored after bad requests: got %d, want 0", got)
	}
	// The same validation accepts the good values.
	for _, q := range []string{"since=2026-11-01T00:00:00Z", "until=2026-11-01T00:00:00.5%2B02:00", "limit=1", "limit=500",
		"direction=inbound", "direction=outbound", "mirror_status=pending", "mirror_status=disabled", "user_id=anything"} {
		if got := len(listPage(t, ta, q).Messages); got != 0 {
			t.Errorf("list %q on an empty store: got %d messages, want 0", q, got)
		}
	}
	r := adminCall(t, on, http.MethodPost, "/admin/mirror/resync?since=2026-11-01T00:00:00Z", nil)
	if got, want := string(r.body), `{"offered":0,"turned_away":0}`; r.code != http.StatusOK || strings.TrimSpace(got) != want {
		t.Errorf("resync of nothing: got %d %s, want 200 %s", r.code, got, want)
	}
}

func TestAdminPostMessage(t *testing.T) {
	ta := startApp(t, testConfig(t))
	at := time.Date(2026, 11, 20, 9, 30, 15, 0, time.FixedZone("EET", 2*3600))
	in := map[string]any{
		"sender_id": bizID, "recipient_id": "cust-1", "direction": "outbound",
		"message_text": "Your order has shipped", "instagram_message_id": "ext-mid-1", "timestamp": at.Format(time.RFC3339),
	}
	r := adminCall(t, ta, http.MethodPost, "/admin/messages", in)
	if r.code != http.StatusCreated {
		t.Fatalf("first POST: got %d %s, want 201", r.code, r.body)
	}
	first := decodeAs[domain.Message](t, r)
	check := func(what string, got domain.Message) {
		t.Helper()
		if got.ID != first.ID || got.MID() != "ext-mid-1" || got.SenderID != bizID || got.RecipientID != "cust-1" ||
			got.UserID != "cust-1" || got.Direction != domain.Outbound || got.MessageText != "Your order has shipped" ||
			!got.Timestamp.Equal(at) || got.Timestamp.Location() != time.UTC || got.MirrorStatus != domain.MirrorDisabled {
			t.Errorf("%s: got %+v, want the posted message (id %d, UTC timestamp %s, disabled)", what, got, first.ID, at.UTC())
		}
	}
	if first.ID < 1 {
		t.Fatalf("first POST: got id %d, want a stored id", first.ID)
	}
	check("first POST", first)

	// Idempotent on instagram_message_id: the stored message comes back,
	// even when the second call says something else.
	in["message_text"] = "a different text"
	r = adminCall(t, ta, http.MethodPost, "/admin/messages", in)
	if r.code != http.StatusOK {
		t.Fatalf("second POST: got %d %s, want 200", r.code, r.body)
	}
	check("second POST", decodeAs[domain.Message](t, r))
	r = adminCall(t, ta, http.MethodGet, "/admin/messages/"+strconv.FormatInt(first.ID, 10), nil)
	if r.code != http.StatusOK {
		t.Fatalf("get: got %d %s, want 200", r.code, r.body)
	}
	check("GET", decodeAs[domain.Message](t, r))

	// A mid a webhook stored is the same message for the admin API.
	if code, body := ta.post(sample(t, "inbound_text.json")); code != http.StatusOK {
		t.Fatalf("webhook: got %d %s", code, body)
	}
	hooked := ta.messages()[1]
	r = adminCall(t, ta, http.MethodPost, "/admin/messages", map[string]any{
		"sender_id": hooked.SenderID, "recipient_id": hooked.RecipientID, "direction": "inbound",
		"message_text": "again", "instagram_message_id": hooked.MID(),
	})
	if got := decodeAs[domain.Message](t, r); r.code != http.StatusOK || got.ID != hooked.ID || got.MessageText != hooked.MessageText {
		t.Errorf("POST of a webhook's mid: got %d %+v, want 200 and message %d unchanged", r.code, got, hooked.ID)
	}

	// Without a mid every call is a new message, stamped now when no
	// timestamp is given.
	before := time.Now().UTC().Add(-time.Second)
	var ids []int64
	for range 2 {
		r := adminCall(t, ta, http.MethodPost, "/admin/messages", map[string]any{
			"sender_id": "cust-2", "recipient_id": bizID, "direction": "inbound", "message_text": "no mid",
		})
		if r.code != http.StatusCreated {
			t.Fatalf("POST without mid: got %d %s, want 201", r.code, r.body)
		}
		m := decodeAs[domain.Message](t, r)
		if m.InstagramMessageID != nil || m.UserID != "cust-2" || m.Timestamp.Before(before) || m.Timestamp.After(time.Now().Add(time.Second)) {
			t.Errorf("POST without mid: got %+v, want no mid, user cust-2, timestamp now", m)
		}
		ids = append(ids, m.ID)
	}
	if ids[0] == ids[1] {
		t.Errorf("two POSTs without mid: both got id %d, want two messages", ids[0])
	}
	if got := len(ta.messages()); got != 4 {
		t.Errorf("stored: got %d, want 4", got)
	}
}

func TestAdminListFiltersAndPaging(t *testing.T) {
	ta := startApp(t, testConfig(t))
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	all := dmSeries("seed", 300, start)
	postDMs(t, ta, all)

	// Default page: 50, newest first.
	p := listPage(t, ta, "")
	if len(p.Messages) != 50 || *p.NextCursor == "" {
		t.Fatalf("default page: got %d messages, cursor %q; want 50 and a cursor", len(p.Messages), *p.NextCursor)
	}
	for i, m := range p.Messages {
		if want := fmt.Sprintf("seed-%d", 299-i); m.MID() != want {
			t.Fatalf("default page item %d: got %s, want %s (newest first)", i, m.MID(), want)
		}
	}
	if got := listPage(t, ta, "limit=500"); len(got.Messages) != 300 || *got.NextCursor != "" {
		t.Errorf("limit=500: got %d messages, cursor %q; want 300 and none", len(got.Messages), *got.NextCursor)
	}
	if got := listPage(t, ta, "limit=300"); len(got.Messages) != 300 || *got.NextCursor != "" {
		t.Errorf("limit=300: got %d messages, cursor %q; want 300 and none", len(got.Messages), *got.NextCursor)
	}

	at := func(i int) string {
		return url.QueryEscape(start.Add(time.Duration(i) * time.Second).Format(time.RFC3339))
	}
	cases := []struct {
		name, query string
		want        func(i int, m dm) bool
	}{
		{"everything", "", func(int, dm) bool { return true }},
		{"user", "user_id=u3", func(_ int, m dm) bool { return m.user == "u3" }},
		{"outbound", "direction=outbound", func(_ int, m dm) bool { return m.outbound }},
		{"inbound of one user", "direction=inbound&user_id=u1", func(_ int, m dm) bool { return !m.outbound && m.user == "u1" }},
		{"since inclusive", "since=" + at(250), func(i int, _ dm) bool { return i >= 250 }},
		{"until exclusive", "until=" + at(20), func(i int, _ dm) bool { return i < 20 }},
		{"window", "since=" + at(100) + "&until=" + at(200), func(i int, _ dm) bool { return i >= 100 && i < 200 }},
		{"window of one user outbound", "since=" + at(100) + "&until=" + at(200) + "&user_id=u2&direction=outbound",
			func(i int, m dm) bool { return i >= 100 && i < 200 && m.user == "u2" && m.outbound }},
		{"status disabled", "mirror_status=disabled", func(int, dm) bool { return true }},
		{"status pending", "mirror_status=pending", func(int, dm) bool { return false }},
		{"unknown user", "user_id=nobody", func(int, dm) bool { return false }},
	}
	for _, c := range cases {
		for _, limit := range []int{23, 500} {
			t.Run(fmt.Sprintf("%s/limit=%d", c.name, limit), func(t *testing.T) {
				var want []string
				for i := len(all) - 1; i >= 0; i-- {
					if c.want(i, all[i]) {
						want = append(want, all[i].mid)
					}
				}
				got := listAll(t, ta, c.query, limit)
				for i := 1; i < len(got); i++ {
					if got[i].ID >= got[i-1].ID {
						t.Fatalf("not newest first: id %d after %d", got[i].ID, got[i-1].ID)
					}
				}
				if g := mids(got); !slices.Equal(g, want) {
					t.Errorf("got %d messages %v..., want %d %v...", len(g), g[:min(3, len(g))], len(want), want[:min(3, len(want))])
				}
			})
		}
	}
}

func TestAdminCursorWhileMessagesArrive(t *testing.T) {
	ta := startApp(t, testConfig(t))
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	postDMs(t, ta, dmSeries("seed", 260, start))
	existing := mids(ta.messages())

	for _, query := range []string{"", "user_id=u2"} {
		t.Run("query="+query, func(t *testing.T) {
			var want []string
			for _, m := range ta.messages() {
				if query == "" || m.UserID == "u2" {
					want = append(want, m.MID())
				}
			}
			slices.Reverse(want)
			var got []string
			cursor, pages := "", 0
			for {
				q := query + "&limit=17"
				if cursor != "" {
					q += "&cursor=" + url.QueryEscape(cursor)
				}
				p := listPage(t, ta, q)
				got = append(got, mids(p.Messages)...)
				pages++
				if *p.NextCursor == "" {
					break
				}
				cursor = *p.NextCursor
				// New messages, for every user, arrive between two pages.
				late := dmSeries(fmt.Sprintf("late-%s-%d", query, pages), 6, start.Add(time.Hour))
				postDMs(t, ta, late)
			}
			if pages < 3 {
				t.Fatalf("pages: got %d, want several", pages)
			}
			seen := map[string]bool{}
			for _, mid := range got {
				if seen[mid] {
					t.Fatalf("message %s served twice", mid)
				}
				seen[mid] = true
			}
			if !slices.Equal(got, want) {
				t.Errorf("paged while messages arrived: got %d messages, want exactly the %d that existed at the first page, newest first", len(got), len(want))
			}
		})
	}
	if got := len(ta.messages()); got <= len(existing) {
		t.Fatalf("stored: got %d, want more than %d (messages arrived)", got, len(existing))
	}
}

// TestAdminPostMirrored checks that an admin POST takes the webhook's path
// to the CRM, once.
func TestAdminPostMirrored(t *testing.T) {
	crm := mysqltest.New(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	ta := startApp(t, cfg)

	at := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	in := map[string]any{
		"sender_id": bizID, "recipient_id": "cust-7", "direction": "outbound",
		"message_text": "Thanks for your order", "instagram_message_id": "crm-mid-1", "timestamp": at.Format(time.RFC3339),
	}
	r := adminCall(t, ta, http.MethodPost, "/admin/messages", in)
	if r.code != http.StatusCreated {
		t.Fatalf("POST: got %d %s, want 201", r.code, r.body)
	}
	first := decodeAs[domain.Message](t, r)
	if first.MirrorStatus != domain.MirrorPending {
		t.Errorf("status with the mirror on: got %s, want pending", first.MirrorStatus)
	}
	eventually(t, 10*time.Second, "the posted message in the CRM", func() bool {
		m, err := ta.store.Get(t.Context(), first.ID)
		return err == nil && m.MirrorStatus == domain.MirrorMirrored
	})
	if r := adminCall(t, ta, http.MethodPost, "/admin/messages", in); r.code != http.StatusOK {
		t.Fatalf("repeated POST: got %d %s, want 200", r.code, r.body)
	}
	rows := crm.Rows(t)
	want := mysqltest.Row{UserID: "cust-7", Username: "cust-7", Direction: "out", Message: "Thanks for your order", CreatedAt: at}
	if len(rows) != 1 {
		t.Fatalf("CRM rows: got %d, want 1", len(rows))
	}
	got := rows[0]
	got.ID = 0
	if got != want {
		t.Errorf("CRM row: got %+v, want %+v", got, want)
	}
	if got := ta.bus.Published(); got != 1 {
		t.Errorf("published: got %d, want 1 (the repeat is not published)", got)
	}
}

func TestHealthz(t *testing.T) {
	ta := startApp(t, testConfig(t))
	code, body := ta.get(ta.base + "/healthz")
	if code != http.StatusOK || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Errorf("healthz: got %d %s, want 200 {\"status\":\"ok\"}", code, body)
	}
	// Liveness says nothing about the store.
	_ = ta.store.Close()
	if code, _ := ta.get(ta.base + "/healthz"); code != http.StatusOK {
		t.Errorf("healthz with the store closed: got %d, want 200", code)
	}
}

// readiness is the body of /readyz.
type readiness struct {
	Status string `json:"status"`
	SQLite string `json:"sqlite"`
	CRM    struct {
		State     string `json:"state"`
		Connected bool   `json:"connected"`
		LastError string `json:"last_error"`
	} `json:"crm"`
}

func readyz(t testing.TB, ta *testApp) (int, readiness) {
	t.Helper()
	r := opsDo(t, http.MethodGet, ta.base+"/readyz", nil, nil)
	return r.code, decodeAs[readiness](t, r)
}

func TestReadyz(t *testing.T) {
	t.Run("mirror off", func(t *testing.T) {
		ta := startApp(t, testConfig(t))
		code, got := readyz(t, ta)
		if code != http.StatusOK || got.Status != "ready" || got.SQLite != "ok" || got.CRM.State != "disabled" || got.CRM.Connected {
			t.Errorf("readyz: got %d %+v, want 200 ready, sqlite ok, crm disabled", code, got)
		}
	})
	t.Run("CRM unreachable does not fail it", func(t *testing.T) {
		cfg := testConfig(t)
		p := blackholeCRM(t, &cfg)
		p.Blackhole(false)
		p.SetRefuse(true)
		ta := startApp(t, cfg)
		eventually(t, 10*time.Second, "the CRM reported unreachable", func() bool {
			_, got := readyz(t, ta)
			return got.CRM.State == "unreachable"
		})
		code, got := readyz(t, ta)
		if code != http.StatusOK || got.Status != "ready" || got.SQLite != "ok" || got.CRM.Connected {
			t.Errorf("readyz: got %d %+v, want 200 ready with crm unreachable", code, got)
		}
		// The public listener does not tell the world the CRM's address or
		// user; the admin stats do, behind the token.
		if got.CRM.LastError != "" {
			t.Errorf("readyz: crm.last_error %q on the public listener, want none", got.CRM.LastError)
		}
		var stats struct {
			LastError string `json:"crm_last_error"`
		}
		_, body := ta.adminDo(http.MethodGet, "/admin/mirror/stats", testAdminToken, nil)
		if err := json.Unmarshal([]byte(body), &stats); err != nil || stats.LastError == "" {
			t.Errorf("admin stats: crm_last_error empty while the CRM is unreachable (%v), want the error: %s", err, body)
		}
	})
	t.Run("CRM connected", func(t *testing.T) {
		crm := mysqltest.New(t)
		cfg := testConfig(t)
		withCRM(&cfg, crm)
		ta := startApp(t, cfg)
		eventually(t, 10*time.Second, "the CRM reported connected", func() bool {
			code, got := readyz(t, ta)
			return code == http.StatusOK && got.CRM.State == "connected" && got.CRM.Connected
		})
	})
	t.Run("store closed", func(t *testing.T) {
		ta := startApp(t, testConfig(t))
		if err := ta.store.Close(); err != nil {
			t.Fatal(err)
		}
		code, got := readyz(t, ta)
		if code != http.StatusServiceUnavailable || got.Status != "not ready" || got.SQLite != "not writable" || got.CRM.State != "disabled" {
			t.Errorf("readyz: got %d %+v, want 503 not ready, sqlite not writable, crm disabled", code, got)
		}
	})
	t.Run("database file immutable", func(t *testing.T) {
		// chmod does not stop root, the immutable attribute does (ext4 and
		// most local filesystems; needs CAP_LINUX_IMMUTABLE). The -shm file
		// is left alone: SQLite maps it, and a write fault there is SIGBUS.
		cfg := testConfig(t)
		ta := startApp(t, cfg)
		if code, body := ta.post(sample(t, "inbound_text.json")); code != http.StatusOK {
			t.Fatalf("post: got %d %s", code, body)
		}
		files := []string{cfg.SQLitePath, cfg.SQLitePath + "-wal"}
		if out, err := exec.Command("chattr", append([]string{"+i"}, files...)...).CombinedOutput(); err != nil {
			t.Skipf("cannot make the database immutable here (chattr +i: %v %s); the closed-store case covers readiness", err, out)
		}
		unfreeze := func() {
			if out, err := exec.Command("chattr", append([]string{"-i"}, files...)...).CombinedOutput(); err != nil {
				t.Errorf("chattr -i: %v %s", err, out)
			}
		}
		t.Cleanup(unfreeze)
		code, got := readyz(t, ta)
		if code != http.StatusServiceUnavailable || got.Status != "not ready" || got.SQLite != "not writable" {
			t.Errorf("readyz: got %d %+v, want 503 not ready, sqlite not writable", code, got)
		}
		if code, _ := ta.post(sample(t, "echo_text.json")); code < 500 {
			t.Errorf("webhook with SQLite not writable: got %d, want 5xx so that Meta delivers again", code)
		}
		unfreeze()
		if code, got := readyz(t, ta); code != http.StatusOK || got.SQLite != "ok" {
			t.Errorf("readyz after the file is writable again: got %d %+v, want 200", code, got)
		}
		if code, body := ta.post(sample(t, "echo_text.json")); code != http.StatusOK {
			t.Errorf("webhook after the file is writable again: got %d %s, want 200", code, body)
		}
	})
}
