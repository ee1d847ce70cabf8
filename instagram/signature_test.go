package instagram_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"igmirror/instagram"
)

func TestVerifySignature(t *testing.T) {
	secret := []byte("app-secret")
	body := mustReadSample(t, "inbound_text.json")
	good := instagram.Sign(secret, body)
	hexSum := strings.TrimPrefix(good, "sha256=")

	tests := []struct {
		name   string
		secret []byte
		body   []byte
		header string
		want   error
	}{
		{name: "right", secret: secret, body: body, header: good, want: nil},
		{name: "right in upper case hex", secret: secret, body: body, header: "sha256=" + strings.ToUpper(hexSum), want: nil},
		{name: "missing", secret: secret, body: body, header: "", want: instagram.ErrSignatureMissing},
		{name: "wrong secret", secret: []byte("other-secret"), body: body, header: good, want: instagram.ErrSignatureInvalid},
		{name: "wrong body", secret: secret, body: append([]byte(" "), body...), header: good, want: instagram.ErrSignatureInvalid},
		{name: "wrong signature", secret: secret, body: body, header: "sha256=" + strings.Repeat("0", 64), want: instagram.ErrSignatureInvalid},
		{name: "sha1 prefix", secret: secret, body: body, header: "sha1=" + hexSum, want: instagram.ErrSignatureInvalid},
		{name: "upper case prefix", secret: secret, body: body, header: "SHA256=" + hexSum, want: instagram.ErrSignatureInvalid},
		{name: "no prefix", secret: secret, body: body, header: hexSum, want: instagram.ErrSignatureInvalid},
		{name: "prefix only", secret: secret, body: body, header: "sha256=", want: instagram.ErrSignatureInvalid},
		{name: "bad hex", secret: secret, body: body, header: "sha256=" + strings.Repeat("zz", 32), want: instagram.ErrSignatureInvalid},
		{name: "truncated", secret: secret, body: body, header: good[:len(good)-2], want: instagram.ErrSignatureInvalid},
		{name: "too long", secret: secret, body: body, header: good + "00", want: instagram.ErrSignatureInvalid},
		{name: "surrounding space", secret: secret, body: body, header: " " + good, want: instagram.ErrSignatureInvalid},
		{name: "empty secret", secret: nil, body: body, header: instagram.Sign(nil, body), want: instagram.ErrSignatureInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := instagram.VerifySignature(tt.secret, tt.body, tt.header)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			v := instagram.NewVerifier(tt.secret)
			for i := range 3 { // its HMAC state is reused: the answer must not change
				if err := v.Verify(tt.body, tt.header); tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
					t.Errorf("Verifier, call %d: got %v, want %v", i+1, err, tt.want)
				}
			}
		})
	}
}

// TestVerifySignatureRawBytesMatter shows why the handler must verify the
// body exactly as received: the same delivery re-encoded by a JSON library
// is semantically equal but no longer carries Meta's signature.
func TestVerifySignatureRawBytesMatter(t *testing.T) {
	secret := []byte("app-secret")
	raw := mustReadSample(t, "inbound_unicode_escaped.json")
	header := instagram.Sign(secret, raw)
	if err := instagram.VerifySignature(secret, raw, header); err != nil {
		t.Fatalf("raw body: got %v, want nil", err)
	}

	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	reencoded, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	rawDelivery, reDelivery := mustParse(t, raw), mustParse(t, reencoded)
	if got, want := reDelivery.Messages[0].MessageText, rawDelivery.Messages[0].MessageText; got != want {
		t.Fatalf("re-encoded text: got %q, want %q", got, want)
	}
	if err := instagram.VerifySignature(secret, reencoded, header); !errors.Is(err, instagram.ErrSignatureInvalid) {
		t.Errorf("re-encoded body: got %v, want ErrSignatureInvalid", err)
	}
}

func TestSignFormat(t *testing.T) {
	// RFC 4231 test case 2.
	got := instagram.Sign([]byte("Jefe"), []byte("what do ya want for nothing?"))
	want := "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestVerifierConcurrent shares one Verifier among goroutines checking
// right and wrong signatures of different bodies (run with -race).
func TestVerifierConcurrent(t *testing.T) {
	secret := []byte("app-secret")
	v := instagram.NewVerifier(secret)
	secret[0] = 'X' // the verifier keeps its own copy
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				body := []byte(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i))
				good := instagram.Sign([]byte("app-secret"), body)
				if err := v.Verify(body, good); err != nil {
					t.Errorf("goroutine %d, body %d: right signature refused: %v", g, i, err)
					return
				}
				if err := v.Verify(append(body, ' '), good); !errors.Is(err, instagram.ErrSignatureInvalid) {
					t.Errorf("goroutine %d, body %d: wrong body accepted: %v", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
