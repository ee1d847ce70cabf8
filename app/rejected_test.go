package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"igmirror/instagram"
)

func TestRejectionsRingEvictsTheOldest(t *testing.T) {
	rs := newRejections(rejectionCapacity)
	for i := 1; i <= rejectionCapacity+1; i++ {
		rs.add(rejection{Reason: rejectBadSignature, Size: int64(i)})
	}
	got := rs.list()
	if len(got) != rejectionCapacity {
		t.Fatalf("held: got %d, want %d", len(got), rejectionCapacity)
	}
	// Newest first: the 101st, down to the 2nd; the 1st was evicted.
	for i, r := range got {
		if want := int64(rejectionCapacity + 1 - i); r.Size != want {
			t.Fatalf("rejection %d: got size %d, want %d", i, r.Size, want)
		}
	}
	if got, want := rs.capacity(), rejectionCapacity; got != want {
		t.Errorf("capacity: got %d, want %d", got, want)
	}
}

func TestRejectionsRingBeforeFull(t *testing.T) {
	rs := newRejections(3)
	if got := rs.list(); len(got) != 0 {
		t.Fatalf("empty ring lists %d", len(got))
	}
	rs.add(rejection{Reason: "a"})
	rs.add(rejection{Reason: "b"})
	var got []string
	for _, r := range rs.list() {
		got = append(got, r.Reason)
	}
	if want := []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestRejectionsRingConcurrent is for the race detector: adds and lists
// from many goroutines at once, and the ring stays bounded.
func TestRejectionsRingConcurrent(t *testing.T) {
	rs := newRejections(rejectionCapacity)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				rs.add(rejection{Reason: rejectMalformed, Size: int64(g*1000 + i)})
				if i%50 == 0 {
					if n := len(rs.list()); n > rejectionCapacity {
						t.Errorf("held %d, over the capacity", n)
					}
				}
			}
		})
	}
	wg.Wait()
	if got, want := len(rs.list()), rejectionCapacity; got != want {
		t.Errorf("held: got %d, want %d", got, want)
	}
}

// TestRejectionHoldsNoBody pins the fields of a rejection: none of them
// can carry the refused body.
func TestRejectionHoldsNoBody(t *testing.T) {
	var got []string
	typ := reflect.TypeFor[rejection]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		got = append(got, f.Name+" "+f.Type.String())
	}
	want := []string{"At time.Time", "Peer string", "Reason string", "Size int64"}
	if !slices.Equal(got, want) {
		t.Errorf("fields: got %q, want %q", got, want)
	}
}

func TestRejectionReasonsMapToOutcomes(t *testing.T) {
	reasons := []string{rejectNotConfigured, rejectTooLarge, rejectUnreadable, rejectMissingSignature,
		rejectBadSignature, rejectMalformed}
	if got, want := len(rejectionOutcome), len(reasons); got != want {
		t.Errorf("mapped reasons: got %d, want %d", got, want)
	}
	for _, r := range reasons {
		if o, ok := rejectionOutcome[r]; !ok || !slices.Contains(deliveryOutcomes, o) {
			t.Errorf("reason %s: maps to %q, want one of %q", r, o, deliveryOutcomes)
		}
	}
}

func TestSeenOnce(t *testing.T) {
	s := newSeenOnce(2)
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"a", true}, {"a", false}, {"b", true}, {"b", false},
		{"c", false}, // over the bound: never logged
		{"a", false},
	} {
		if got := s.first(tc.name); got != tc.want {
			t.Errorf("first(%q): got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// rejectedList is the answer of GET /admin/deliveries/rejected.
type rejectedList struct {
	Rejected []rejection `json:"rejected"`
	Capacity int         `json:"capacity"`
}

func getRejected(t *testing.T, ta *testApp) (rejectedList, string) {
	t.Helper()
	code, body := ta.adminDo(http.MethodGet, "/admin/deliveries/rejected", testAdminToken, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /admin/deliveries/rejected: got %d %s", code, body)
	}
	var out rejectedList
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return out, body
}

// TestRejectedDeliveries refuses a POST for every reason the signed
// listener has, and finds each at the admin endpoint, newest first, with
// its peer and size, counted under its outcome, and its body nowhere.
func TestRejectedDeliveries(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTPMaxBodySize = 1 << 10
	ta := startApp(t, cfg)
	const marker = "refused-body-marker-7Q4"
	unsigned := []byte(`{"object":"instagram","entry":[],"note":"` + marker + `-1"}`)
	forged := []byte(`{"object":"instagram","entry":[],"note":"` + marker + `-2"}`)
	malformed := []byte(`{"object":"page","entry":[],"note":"` + marker + `-3"}`)
	big := []byte(`{"note":"` + marker + `-4` + strings.Repeat("x", 2<<10) + `"}`)

	before := scrape(t, ta)
	for _, tc := range []struct {
		name string
		body []byte
		sig  string
		want int
	}{
		{"missing signature", unsigned, "", http.StatusUnauthorized},
		{"bad signature", forged, "sha256=" + strings.Repeat("ab", 32), http.StatusForbidden},
		{"malformed", malformed, "sign", http.StatusBadRequest},
		{"too large", big, "sign", http.StatusRequestEntityTooLarge},
	} {
		sig := tc.sig
		if sig == "sign" {
			sig = instagram.Sign([]byte(testAppSecret), tc.body)
		}
		if code, body := ta.postWithSig(tc.body, sig); code != tc.want {
			t.Fatalf("%s: got %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	after := scrape(t, ta)

	got, raw := getRejected(t, ta)
	if got.Capacity != rejectionCapacity {
		t.Errorf("capacity: got %d, want %d", got.Capacity, rejectionCapacity)
	}
	type row struct {
		Reason, Peer string
		Size         int64
	}
	var rows []row
	for _, r := range got.Rejected {
		rows = append(rows, row{r.Reason, r.Peer, r.Size})
		if r.At.IsZero() {
			t.Errorf("%s: no time", r.Reason)
		}
	}
	want := []row{
		{rejectTooLarge, "127.0.0.1", int64(len(big))},
		{rejectMalformed, "127.0.0.1", int64(len(malformed))},
		{rejectBadSignature, "127.0.0.1", int64(len(forged))},
		{rejectMissingSignature, "127.0.0.1", int64(len(unsigned))},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("rejected:\n got %+v\nwant %+v", rows, want)
	}
	if strings.Contains(raw, marker) || strings.Contains(ta.logs.String(), marker) {
		t.Errorf("a refused body reached the admin answer or the log")
	}
	for outcome, n := range map[string]float64{deliveryUnauthorized: 1, deliveryForbidden: 1, deliveryBadRequest: 1, deliveryTooLarge: 1} {
		if d := after.value(t, "igmirror_webhook_deliveries_total", "outcome", outcome) -
			before.value(t, "igmirror_webhook_deliveries_total", "outcome", outcome); d != n {
			t.Errorf("deliveries{outcome=%s}: got +%v, want +%v", outcome, d, n)
		}
	}
	// The endpoint is behind the admin token like the rest.
	if code, _ := ta.adminDo(http.MethodGet, "/admin/deliveries/rejected", "", nil); code != http.StatusUnauthorized {
		t.Errorf("without a token: got %d, want 401", code)
	}
	// Spoofed forwarding headers do not choose the peer.
	req, err := http.NewRequest(http.MethodPost, ta.base+"/webhooks/instagram", bytes.NewReader(unsigned))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Real-IP", "203.0.113.9")
	if code, _ := ta.do(req); code != http.StatusUnauthorized {
		t.Fatalf("spoofed: got %d, want 401", code)
	}
	if got, _ := getRejected(t, ta); got.Rejected[0].Peer != "127.0.0.1" {
		t.Errorf("peer with forwarding headers: got %q, want the TCP peer 127.0.0.1", got.Rejected[0].Peer)
	}
}

// TestRejectedNotConfigured: with no app secret every POST is refused
// (503), kept as not_configured with its declared size.
func TestRejectedNotConfigured(t *testing.T) {
	cfg := testConfig(t)
	cfg.InstagramAppSecret = ""
	ta := startApp(t, cfg)
	body := []byte(`{"object":"instagram","entry":[]}`)
	before := scrape(t, ta)
	if code, _ := ta.postWithSig(body, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503", code)
	}
	after := scrape(t, ta)
	got, _ := getRejected(t, ta)
	if len(got.Rejected) != 1 || got.Rejected[0].Reason != rejectNotConfigured || got.Rejected[0].Size != int64(len(body)) {
		t.Errorf("rejected: got %+v, want one not_configured of %d bytes", got.Rejected, len(body))
	}
	if d := after.value(t, "igmirror_webhook_deliveries_total", "outcome", deliveryUnsignedDeny) -
		before.value(t, "igmirror_webhook_deliveries_total", "outcome", deliveryUnsignedDeny); d != 1 {
		t.Errorf("deliveries{outcome=unsigned_deny}: got +%v, want +1", d)
	}
}

// TestRejectedAfterManyKeepsTheLast100 refuses more than the ring holds
// through the real listener: the answer stays at the capacity, newest
// first.
func TestRejectedAfterManyKeepsTheLast100(t *testing.T) {
	ta := startApp(t, testConfig(t))
	for i := range rejectionCapacity + 5 {
		body := fmt.Appendf(nil, `{"n":%d%s}`, i, strings.Repeat(" ", i))
		if code, _ := ta.postWithSig(body, ""); code != http.StatusUnauthorized {
			t.Fatalf("post %d: got %d, want 401", i, code)
		}
	}
	got, _ := getRejected(t, ta)
	if len(got.Rejected) != rejectionCapacity {
		t.Fatalf("held: got %d, want %d", len(got.Rejected), rejectionCapacity)
	}
	// Each body was a byte longer than the one before: sizes tell them apart.
	first, last := got.Rejected[0].Size, got.Rejected[rejectionCapacity-1].Size
	if want := int64(len(fmt.Sprintf(`{"n":%d}`, rejectionCapacity+4)) + rejectionCapacity + 4); first != want {
		t.Errorf("newest size: got %d, want %d", first, want)
	}
	if want := int64(len(`{"n":5}`) + 5); last != want {
		t.Errorf("oldest held size: got %d, want %d (the first five evicted)", last, want)
	}
}
