package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/instagram"
	"igmirror/internal/testkit/mysqltest"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// rejectedPath is documented ahead of its handler, which another branch
// adds (issue 14). Until it is registered its checks skip, saying so.
const rejectedPath = "/admin/deliveries/rejected"

// openapiSpec is the embedded document, a router over it, and which
// statuses of which operations real responses have been validated against.
type openapiSpec struct {
	doc    *openapi3.T
	router routers.Router
	seen   map[string]map[int]bool // operationId -> status -> validated
}

// loadOpenAPISpec loads the very bytes GET /admin/openapi.json serves and
// fails the test unless they are a valid OpenAPI 3.1 document.
func loadOpenAPISpec(t *testing.T) *openapiSpec {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapiJSON)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if got := doc.OpenAPI; got != "3.1.0" {
		t.Fatalf("openapi version: got %q, want 3.1.0", got)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("route openapi.json: %v", err)
	}
	return &openapiSpec{doc: doc, router: router, seen: map[string]map[int]bool{}}
}

// apiCall is one request to the admin listener and what it must get.
type apiCall struct {
	op     string // the operationId the document must route it to
	method string
	path   string // with the query string
	token  string // bearer token; "" sends none
	body   []byte // nil sends none
	want   int
}

// call sends c to ta's admin listener, checks the status, and validates
// the real response (status declared for the operation, content type,
// body against its schema, declared headers) against the document. For a
// request the service accepted it also validates the request: the
// document must not refuse what the code takes.
func (s *openapiSpec) call(t *testing.T, ta *testApp, c apiCall) opsResp {
	t.Helper()
	hdr := map[string]string{}
	if c.token != "" {
		hdr["Authorization"] = "Bearer " + c.token
	}
	r := opsDo(t, c.method, ta.admin+c.path, hdr, c.body)
	if r.code != c.want {
		t.Errorf("%s %s: got %d %s, want %d", c.method, c.path, r.code, r.body, c.want)
	}
	if err := s.validate(c, r); err != nil {
		t.Errorf("%s %s -> %d: %v\nbody: %.600s", c.method, c.path, r.code, err, r.body)
	}
	return r
}

// validate checks one exchange against the document and records it.
func (s *openapiSpec) validate(c apiCall, r opsResp) error {
	ctx := context.Background()
	req := httptest.NewRequest(c.method, c.path, bytes.NewReader(c.body))
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("the document has no operation for it: %w", err)
	}
	if route.Operation.OperationID != c.op {
		return fmt.Errorf("the document routes it to %q, want %q", route.Operation.OperationID, c.op)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if r.code/100 == 2 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return fmt.Errorf("the service accepted a request the document refuses: %w", err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: r.code, Header: r.header,
		// IncludeResponseStatus: a status the operation does not declare
		// is drift, not something to let through.
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(r.body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("the response does not match the document: %w", err)
	}
	if s.seen[c.op] == nil {
		s.seen[c.op] = map[int]bool{}
	}
	s.seen[c.op][r.code] = true
	return nil
}

// docOp is one operation of the document.
type docOp struct {
	id, method, path string // path as documented: /admin/messages/{id}
}

// operations lists the document's operations.
func (s *openapiSpec) operations() []docOp {
	var out []docOp
	for p, item := range s.doc.Paths.Map() {
		for method, op := range item.Operations() {
			out = append(out, docOp{id: op.OperationID, method: method, path: p})
		}
	}
	slices.SortFunc(out, func(a, b docOp) int { return strings.Compare(a.id, b.id) })
	return out
}

// call is a request to o with its path parameters set to 1.
func (o docOp) call() apiCall {
	return apiCall{op: o.id, method: o.method, path: strings.ReplaceAll(o.path, "{id}", "1")}
}

// rejectedRegistered reports whether ta's admin listener has the route of
// the refused-POSTs list yet.
func rejectedRegistered(ta *testApp) bool {
	for _, r := range ta.App.admin.Routes() {
		if r.Method == http.MethodGet && r.Path == rejectedPath {
			return true
		}
	}
	return false
}

// echoPath turns an Echo route ("/admin/messages/:id") into the
// document's form ("/admin/messages/{id}").
func echoPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") {
			parts[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

// TestOpenAPIRoutesMatchDocument holds the admin Echo's routes and the
// document's operations to each other, so that neither can drift.
func TestOpenAPIRoutesMatchDocument(t *testing.T) {
	spec := loadOpenAPISpec(t)
	ta := startApp(t, testConfig(t))

	registered := map[string]bool{}
	for _, r := range ta.App.admin.Routes() {
		registered[r.Method+" "+echoPath(r.Path)] = true
	}
	documented := map[string]bool{}
	for _, o := range spec.operations() {
		documented[o.method+" "+o.path] = true
	}
	if len(registered) == 0 || len(documented) == 0 {
		t.Fatalf("got %d routes and %d documented operations, want some of each", len(registered), len(documented))
	}
	for r := range registered {
		if !documented[r] {
			t.Errorf("route %s is registered on the admin listener but not in app/openapi.json", r)
		}
	}
	for d := range documented {
		t.Run("documented "+d, func(t *testing.T) {
			if registered[d] {
				return
			}
			if d == http.MethodGet+" "+rejectedPath {
				t.Skipf("%s is documented but not registered yet: its handler comes from another branch (issue 14)", d)
			}
			t.Errorf("%s is in app/openapi.json but not registered on the admin listener", d)
		})
	}
}

// TestOpenAPIConformance calls every admin endpoint of the whole service,
// in success and error cases, and validates each real response against
// the document; then it checks that every status every operation declares
// was seen at least once, so the document promises nothing untested.
func TestOpenAPIConformance(t *testing.T) {
	spec := loadOpenAPISpec(t)
	// excused are the declared statuses no subtest provokes, with why.
	excused := map[string]map[int]string{
		"resync": {
			http.StatusInternalServerError: "the reconciler keeps the store it was built with; no failing store can be slipped under it",
			http.StatusServiceUnavailable:  "the reconciler keeps the store it was built with; no failing store can be slipped under it",
		},
	}
	excuse := func(op, why string, statuses ...int) {
		if excused[op] == nil {
			excused[op] = map[int]string{}
		}
		for _, s := range statuses {
			excused[op][s] = why
		}
	}

	t.Run("mirror off", func(t *testing.T) {
		if !openapiMirrorOff(t, spec) {
			excuse("listRejectedDeliveries", "its handler is not registered yet", http.StatusOK)
		}
	})
	t.Run("every operation without the right token", func(t *testing.T) { openapiAuth(t, spec) })
	t.Run("store failing", func(t *testing.T) { openapiStoreFailing(t, spec) })
	mirrorSkipped := false
	t.Run("mirror on", func(t *testing.T) {
		defer func() { mirrorSkipped = t.Skipped() }()
		openapiMirrorOn(t, spec)
	})
	if t.Failed() {
		return
	}
	if mirrorSkipped {
		excuse("resync", "the mirror-on subtest needs MySQL", http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
	}

	for _, o := range spec.operations() {
		for code := range spec.doc.Paths.Value(o.path).GetOperation(o.method).Responses.Map() {
			n, err := strconv.Atoi(code)
			if err != nil {
				t.Errorf("%s declares response %q; want only numeric statuses", o.id, code)
				continue
			}
			if spec.seen[o.id][n] {
				continue
			}
			if why, ok := excused[o.id][n]; ok {
				t.Logf("%s %d not exercised: %s", o.id, n, why)
				continue
			}
			t.Errorf("%s declares %d, but no test response with that status was validated", o.id, n)
		}
	}
}

// openapiMirrorOff drives every endpoint of a service with the mirror off
// and the journal on. It reports whether the refused-POSTs list exists.
func openapiMirrorOff(t *testing.T, spec *openapiSpec) (rejectedExists bool) {
	ta := startApp(t, testConfig(t))
	tok := testAdminToken
	ok := func(op, method, path string, body []byte, want int) opsResp {
		t.Helper()
		return spec.call(t, ta, apiCall{op: op, method: method, path: path, token: tok, body: body, want: want})
	}
	big := []byte(`{"message_text":"` + strings.Repeat("x", adminBodyLimit) + `"}`)

	r := ok("getOpenAPI", http.MethodGet, "/admin/openapi.json", nil, http.StatusOK)
	if !bytes.Equal(r.body, openapiJSON) {
		t.Errorf("GET /admin/openapi.json: the body is not the embedded document")
	}

	postSamples(t, ta)

	// POST /admin/messages: 201 new, 200 the same mid again, and nulls.
	rec := `{"sender_id":"` + bizID + `","recipient_id":"cust-oa","direction":"outbound","message_text":"from the CRM","instagram_message_id":"oa-1","timestamp":"2026-11-21T10:00:00Z"}`
	ok("recordMessage", http.MethodPost, "/admin/messages", []byte(rec), http.StatusCreated)
	ok("recordMessage", http.MethodPost, "/admin/messages", []byte(rec), http.StatusOK)
	ok("recordMessage", http.MethodPost, "/admin/messages",
		[]byte(`{"sender_id":"cust-oa","recipient_id":"`+bizID+`","direction":"inbound","message_text":"no mid","instagram_message_id":null,"timestamp":null}`), http.StatusCreated)
	for _, body := range []string{
		`{`,
		`{"sender_id":"a","recipient_id":"b","direction":"inbound","message_text":"x","bogus":1}`,
		`{"sender_id":"a","recipient_id":"b","direction":"inbound","message_text":"   "}`,
		`{"sender_id":"a","recipient_id":"b","direction":"sideways","message_text":"x"}`,
		`{"recipient_id":"b","direction":"inbound","message_text":"x"}`,
		`{"sender_id":"a","recipient_id":"b","direction":"inbound","message_text":"x","timestamp":"yesterday"}`,
		`{"sender_id":"a","recipient_id":"b","direction":"inbound","message_text":"x","instagram_message_id":""}`,
		`{"sender_id":1,"recipient_id":"b","direction":"inbound","message_text":"x"}`,
	} {
		ok("recordMessage", http.MethodPost, "/admin/messages", []byte(body), http.StatusBadRequest)
	}
	ok("recordMessage", http.MethodPost, "/admin/messages", big, http.StatusRequestEntityTooLarge)

	// GET /admin/messages: everything, every filter, paging.
	var all messagePage
	if err := json.Unmarshal(ok("listMessages", http.MethodGet, "/admin/messages", nil, http.StatusOK).body, &all); err != nil || len(all.Messages) < 8 {
		t.Fatalf("list messages: got %d messages (%v), want the samples and the recorded ones", len(all.Messages), err)
	}
	ok("listMessages", http.MethodGet, "/admin/messages?user_id="+sampleCustomer+"&direction=inbound&mirror_status=disabled&since=2020-01-01T00:00:00Z&until=2030-01-01T00:00:00Z&limit=500", nil, http.StatusOK)
	var page messagePage
	if err := json.Unmarshal(ok("listMessages", http.MethodGet, "/admin/messages?limit=2", nil, http.StatusOK).body, &page); err != nil || page.NextCursor == nil || *page.NextCursor == "" {
		t.Fatalf("list messages, limit 2: want a next_cursor (%v)", err)
	}
	ok("listMessages", http.MethodGet, "/admin/messages?limit=2&cursor="+*page.NextCursor, nil, http.StatusOK)
	for _, q := range []string{"direction=sideways", "mirror_status=lost", "since=yesterday", "until=2026-13-01T00:00:00Z", "limit=0", "limit=501", "limit=ten", "cursor=bogus"} {
		ok("listMessages", http.MethodGet, "/admin/messages?"+q, nil, http.StatusBadRequest)
	}

	// GET /admin/messages/{id}: every stored message, so every optional field the samples fill is checked.
	for _, m := range all.Messages {
		ok("getMessage", http.MethodGet, fmt.Sprintf("/admin/messages/%d", m.ID), nil, http.StatusOK)
	}
	ok("getMessage", http.MethodGet, "/admin/messages/999999", nil, http.StatusNotFound)
	ok("getMessage", http.MethodGet, "/admin/messages/abc", nil, http.StatusBadRequest)
	ok("getMessage", http.MethodGet, "/admin/messages/0", nil, http.StatusBadRequest)

	// The mirror is off: stats say so with nulls, and resync is a conflict.
	ok("mirrorStats", http.MethodGet, "/admin/mirror/stats", nil, http.StatusOK)
	ok("subscription", http.MethodGet, "/admin/subscription", nil, http.StatusOK)
	ok("resync", http.MethodPost, "/admin/mirror/resync", nil, http.StatusConflict)
	ok("resync", http.MethodPost, "/admin/mirror/resync", []byte(`{"mirror_status":"pending"}`), http.StatusConflict)

	// The journal.
	var deliveries struct {
		Deliveries []domain.Delivery `json:"deliveries"`
		NextCursor string            `json:"next_cursor"`
	}
	if err := json.Unmarshal(ok("listDeliveries", http.MethodGet, "/admin/deliveries", nil, http.StatusOK).body, &deliveries); err != nil || len(deliveries.Deliveries) != len(sampleOrder) {
		t.Fatalf("list deliveries: got %d (%v), want %d", len(deliveries.Deliveries), err, len(sampleOrder))
	}
	var dpage struct {
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(ok("listDeliveries", http.MethodGet, "/admin/deliveries?limit=1&since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00Z", nil, http.StatusOK).body, &dpage); err != nil || dpage.NextCursor == "" {
		t.Fatalf("list deliveries, limit 1: want a next_cursor (%v)", err)
	}
	ok("listDeliveries", http.MethodGet, "/admin/deliveries?limit=1&cursor="+dpage.NextCursor, nil, http.StatusOK)
	for _, q := range []string{"since=yesterday", "until=soon", "limit=0", "limit=501", "cursor=bogus"} {
		ok("listDeliveries", http.MethodGet, "/admin/deliveries?"+q, nil, http.StatusBadRequest)
	}
	for _, d := range deliveries.Deliveries {
		ok("getDelivery", http.MethodGet, fmt.Sprintf("/admin/deliveries/%d", d.ID), nil, http.StatusOK)
		raw := ok("getDeliveryRaw", http.MethodGet, fmt.Sprintf("/admin/deliveries/%d/raw", d.ID), nil, http.StatusOK)
		if got, want := raw.header.Get("X-Hub-Signature-256"), instagram.Sign([]byte(testAppSecret), raw.body); got != want {
			t.Errorf("delivery %d raw: X-Hub-Signature-256 got %q, want %q (the signature of the bytes served)", d.ID, got, want)
		}
	}
	for _, op := range []string{"getDelivery", "getDeliveryRaw"} {
		suffix := map[string]string{"getDelivery": "", "getDeliveryRaw": "/raw"}[op]
		ok(op, http.MethodGet, "/admin/deliveries/999999"+suffix, nil, http.StatusNotFound)
		ok(op, http.MethodGet, "/admin/deliveries/abc"+suffix, nil, http.StatusBadRequest)
	}

	// POST /admin/deliveries/replay: by ids (body and query) and by window (query and body).
	first, second := deliveries.Deliveries[len(deliveries.Deliveries)-1].ID, deliveries.Deliveries[len(deliveries.Deliveries)-2].ID
	ok("replayDeliveries", http.MethodPost, "/admin/deliveries/replay", []byte(fmt.Sprintf(`{"ids":[%d]}`, first)), http.StatusOK)
	ok("replayDeliveries", http.MethodPost, fmt.Sprintf("/admin/deliveries/replay?ids=%d,%d", first, second), nil, http.StatusOK)
	ok("replayDeliveries", http.MethodPost, "/admin/deliveries/replay?since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00Z", nil, http.StatusOK)
	ok("replayDeliveries", http.MethodPost, "/admin/deliveries/replay", []byte(`{"since":"2020-01-01T00:00:00Z"}`), http.StatusOK)
	for _, c := range []struct{ query, body string }{
		{"", ""},
		{"", `{"ids":[1],"since":"2020-01-01T00:00:00Z"}`},
		{"?ids=one", ""},
		{"", `{"since":"yesterday"}`},
		{"", `{"bogus":1}`},
		{"", `{"ids":"1"}`},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		ok("replayDeliveries", http.MethodPost, "/admin/deliveries/replay"+c.query, body, http.StatusBadRequest)
	}
	ok("replayDeliveries", http.MethodPost, "/admin/deliveries/replay", []byte(`{"ids":[999999]}`), http.StatusNotFound)
	ok("replayDeliveries", http.MethodPost, "/admin/deliveries/replay", big, http.StatusRequestEntityTooLarge)

	// GET /admin/deliveries/rejected, once a refused POST is on it.
	if !rejectedRegistered(ta) {
		t.Logf("%s is not registered yet (its handler comes from another branch, issue 14): not validated", rejectedPath)
		return false
	}
	if code, body := ta.postWithSig([]byte(`{"object":"instagram","entry":[]}`), "sha256=00"); code != http.StatusForbidden {
		t.Fatalf("bad signature: got %d %s, want 403", code, body)
	}
	var rej struct {
		Rejected []json.RawMessage `json:"rejected"`
	}
	if err := json.Unmarshal(ok("listRejectedDeliveries", http.MethodGet, rejectedPath, nil, http.StatusOK).body, &rej); err != nil || len(rej.Rejected) == 0 {
		t.Errorf("rejected: got %d entries (%v), want the refused POST", len(rej.Rejected), err)
	}
	return true
}

// TestOpenAPIRejectedList is the refused-POSTs list on its own, so that
// while its handler is missing the skip says so where it is run.
func TestOpenAPIRejectedList(t *testing.T) {
	spec := loadOpenAPISpec(t)
	ta := startApp(t, testConfig(t))
	if !rejectedRegistered(ta) {
		// Asked by route, not by status: unregistered, the path falls to
		// GET /admin/deliveries/{id} and answers 400 (invalid id), not 404.
		code, _ := ta.adminDo(http.MethodGet, rejectedPath, testAdminToken, nil)
		t.Skipf("GET %s is not registered (it answers %d): its handler comes from another branch (issue 14); the document describes it already", rejectedPath, code)
	}
	if code, body := ta.postWithSig([]byte(`{"object":"instagram","entry":[]}`), ""); code != http.StatusUnauthorized {
		t.Fatalf("unsigned: got %d %s, want 401", code, body)
	}
	spec.call(t, ta, apiCall{op: "listRejectedDeliveries", method: http.MethodGet, path: rejectedPath, token: testAdminToken, want: http.StatusOK})
}

// openapiAuth calls every documented operation without a token, with a
// wrong one, and on a service without ADMIN_TOKEN.
func openapiAuth(t *testing.T, spec *openapiSpec) {
	ta := startApp(t, testConfig(t))
	cfg := testConfig(t)
	cfg.AdminToken = ""
	off := startApp(t, cfg)
	for _, o := range spec.operations() {
		c := o.call()
		for _, tok := range []string{"", "not-the-token"} {
			c.token, c.want = tok, http.StatusUnauthorized
			spec.call(t, ta, c)
			c.want = http.StatusForbidden
			spec.call(t, off, c)
		}
	}
}

// failingStore is the real store with every read and save the admin API
// makes failing with err, as a database that is gone or overloaded would.
type failingStore struct {
	domain.Store
	err error
}

func (s failingStore) Save(context.Context, domain.Batch) (domain.SaveResult, error) {
	return domain.SaveResult{}, s.err
}

func (s failingStore) Get(context.Context, int64) (domain.Message, error) {
	return domain.Message{}, s.err
}

func (s failingStore) GetByMID(context.Context, string) (domain.Message, error) {
	return domain.Message{}, s.err
}

func (s failingStore) List(context.Context, domain.ListFilter) ([]domain.Message, string, error) {
	return nil, "", s.err
}

func (s failingStore) CountByStatus(context.Context) (map[domain.MirrorStatus]int64, error) {
	return nil, s.err
}

func (s failingStore) ListDeliveries(context.Context, domain.DeliveryFilter) ([]domain.Delivery, string, error) {
	return nil, "", s.err
}

func (s failingStore) GetDelivery(context.Context, int64) (domain.Delivery, error) {
	return domain.Delivery{}, s.err
}

// openapiStoreFailing calls every operation that touches the store on a
// service whose store fails: unavailable (503) and otherwise broken (500).
func openapiStoreFailing(t *testing.T, spec *openapiSpec) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("read: %w", domain.ErrUnavailable), http.StatusServiceUnavailable},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		ta := startAppWith(t, testConfig(t), func(a *App) {
			fs := failingStore{Store: a.store, err: c.err}
			a.store, a.ingester.store = fs, fs
		})
		for _, call := range []apiCall{
			{op: "listMessages", method: http.MethodGet, path: "/admin/messages"},
			{op: "getMessage", method: http.MethodGet, path: "/admin/messages/1"},
			{op: "recordMessage", method: http.MethodPost, path: "/admin/messages",
				body: []byte(`{"sender_id":"a","recipient_id":"b","direction":"inbound","message_text":"x"}`)},
			{op: "mirrorStats", method: http.MethodGet, path: "/admin/mirror/stats"},
			{op: "listDeliveries", method: http.MethodGet, path: "/admin/deliveries"},
			{op: "getDelivery", method: http.MethodGet, path: "/admin/deliveries/1"},
			{op: "getDeliveryRaw", method: http.MethodGet, path: "/admin/deliveries/1/raw"},
			{op: "replayDeliveries", method: http.MethodPost, path: "/admin/deliveries/replay", body: []byte(`{"ids":[1]}`)},
		} {
			call.token, call.want = testAdminToken, c.want
			spec.call(t, ta, call)
		}
	}
}

// openapiMirrorOn drives the endpoints whose answers change with the CRM
// mirror on: stats with a success time, resync, a mirrored message.
func openapiMirrorOn(t *testing.T, spec *openapiSpec) {
	crm := mysqltest.New(t)
	cfg := testConfig(t)
	withCRM(&cfg, crm)
	ta := startApp(t, cfg)
	ok := func(op, method, path string, body []byte, want int) opsResp {
		t.Helper()
		return spec.call(t, ta, apiCall{op: op, method: method, path: path, token: testAdminToken, body: body, want: want})
	}

	if code, body := ta.post(textDelivery("oa-mirror-1", "to the CRM", time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC))); code != http.StatusOK {
		t.Fatalf("post: got %d %s, want 200", code, body)
	}
	// No deadline of its own: go test's -timeout bounds the wait, so a
	// slow machine is never a failure.
	for statusCount(t, ta, domain.MirrorMirrored) < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	var st struct {
		LastSuccessAt *string `json:"last_success_at"`
	}
	if err := json.Unmarshal(ok("mirrorStats", http.MethodGet, "/admin/mirror/stats", nil, http.StatusOK).body, &st); err != nil || st.LastSuccessAt == nil {
		t.Errorf("stats after a mirrored message: want last_success_at set (%v)", err)
	}
	var page messagePage
	if err := json.Unmarshal(ok("listMessages", http.MethodGet, "/admin/messages?mirror_status=mirrored", nil, http.StatusOK).body, &page); err != nil || len(page.Messages) != 1 {
		t.Fatalf("mirrored messages: got %d (%v), want 1", len(page.Messages), err)
	}
	ok("getMessage", http.MethodGet, fmt.Sprintf("/admin/messages/%d", page.Messages[0].ID), nil, http.StatusOK)

	ok("resync", http.MethodPost, "/admin/mirror/resync", nil, http.StatusOK)
	ok("resync", http.MethodPost, "/admin/mirror/resync", []byte(`{"mirror_status":"mirrored"}`), http.StatusOK)
	ok("resync", http.MethodPost, "/admin/mirror/resync?since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00Z&mirror_status=pending", nil, http.StatusOK)
	for _, c := range []struct{ query, body string }{
		{"", `{"since":"yesterday"}`},
		{"?until=soon", ""},
		{"", `{"mirror_status":"lost"}`},
		{"", `{"bogus":1}`},
		{"", `{`},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		ok("resync", http.MethodPost, "/admin/mirror/resync"+c.query, body, http.StatusBadRequest)
	}
	ok("resync", http.MethodPost, "/admin/mirror/resync", []byte(`{"since":"`+strings.Repeat("x", adminBodyLimit)+`"}`), http.StatusRequestEntityTooLarge)
}

// TestOpenAPIValidatorCatchesDrift proves the checks above can fail: a
// response that strays from the document in any of these ways is refused.
func TestOpenAPIValidatorCatchesDrift(t *testing.T) {
	spec := loadOpenAPISpec(t)
	mid := "m-1"
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	good, err := json.Marshal(domain.Message{
		ID: 1, InstagramMessageID: &mid, SenderID: "c", RecipientID: "b", Direction: domain.Inbound, MessageText: "hi",
		Timestamp: at, CreatedAt: at, MirrorStatus: domain.MirrorPending, UserID: "c", MirroredAt: &at,
	})
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	header := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	okHeader := header("Content-Type", "application/json", "X-Request-Id", "abc123")
	call := apiCall{op: "getMessage", method: http.MethodGet, path: "/admin/messages/1", token: testAdminToken}

	if err := spec.validate(call, opsResp{code: http.StatusOK, header: okHeader, body: good}); err != nil {
		t.Fatalf("a well-formed message is refused: %v", err)
	}
	for _, c := range []struct {
		name   string
		code   int
		header http.Header
		body   []byte
	}{
		{"unknown field", 200, okHeader, edit(func(m map[string]any) { m["surprise"] = 1 })},
		{"required field missing", 200, okHeader, edit(func(m map[string]any) { delete(m, "mirror_status") })},
		{"null where not nullable", 200, okHeader, edit(func(m map[string]any) { m["sender_id"] = nil })},
		{"not a date-time", 200, okHeader, edit(func(m map[string]any) { m["timestamp"] = "yesterday" })},
		{"value outside the enum", 200, okHeader, edit(func(m map[string]any) { m["direction"] = "sideways" })},
		{"wrong type", 200, okHeader, edit(func(m map[string]any) { m["id"] = "1" })},
		{"optional time as null", 200, okHeader, edit(func(m map[string]any) { m["mirrored_at"] = nil })},
		{"undeclared status", http.StatusTeapot, okHeader, good},
		{"undeclared content type", 200, header("Content-Type", "text/plain", "X-Request-Id", "abc123"), good},
		{"required header missing", 200, header("Content-Type", "application/json"), good},
		{"error body with more than error", 404, okHeader, []byte(`{"error":"message 1 not found","code":404}`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := spec.validate(call, opsResp{code: c.code, header: c.header, body: c.body}); err == nil {
				t.Errorf("got no error for %s, want the validator to refuse it", c.body)
			}
		})
	}
}
