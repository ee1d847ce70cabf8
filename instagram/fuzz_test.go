package instagram_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"igmirror/instagram"
)

func sampleBodies(f *testing.F) [][]byte {
	f.Helper()
	var bodies [][]byte
	for _, path := range mustSampleFiles(f) {
		bodies = append(bodies, mustReadSample(f, filepath.Base(path)))
	}
	return bodies
}

func FuzzParse(f *testing.F) {
	for _, body := range sampleBodies(f) {
		f.Add(body)
	}
	f.Add(batchBody(3))
	f.Add(deliveryOf(messageItem("m1", "a"), messageItem("m1", "b")))
	f.Add([]byte(`{"object":"instagram","entry":[{"messaging":[{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"1527459824","message":{"mid":"m","is_echo":true,"attachments":[{"type":"image","payload":{"url":"https://x/?a=1&b=<2>"}}]}}]}]}`))
	f.Add([]byte(`{"object":"instagram","entry":[{"messaging":[{"timestamp":1e3,"message":{"mid":"m","is_deleted":true}}]}]}`))
	f.Add([]byte(`[[[[[[[[`))
	f.Add([]byte(`null`))

	f.Add([]byte(`{"object":"instagram","entry":[{"hop":1,"standby":[{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":"2021-09-08T06:34:04.000Z","message":{"mid":"m","text":7}},{"x":{}},5]}]}`))
	f.Add([]byte(`{"object":"instagram","entry":[{"messaging":{},"changes":"x"},[],{"messaging":[{"message_edit":{"mid":"m","num_edit":"1"}}]}]}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := instagram.Parse(body)
		if err != nil {
			if !errors.Is(err, instagram.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			// Only the envelope refuses a delivery: a valid JSON object
			// naming instagram with an entry list is never refused.
			var env struct {
				Object any             `json:"object"`
				Entry  json.RawMessage `json:"entry"`
			}
			if utf8.Valid(body) && json.Unmarshal(body, &env) == nil && env.Object == "instagram" &&
				bytes.HasPrefix(bytes.TrimSpace(env.Entry), []byte("[")) {
				t.Fatalf("a well-formed envelope was refused: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for i, m := range d.Messages {
			mid := m.MID()
			switch {
			case mid == "":
				t.Errorf("message %d has no mid", i)
			case seen[mid]:
				t.Errorf("message %d repeats mid %q", i, mid)
			case m.SenderID == "" || m.RecipientID == "":
				t.Errorf("message %d: sender %q, recipient %q", i, m.SenderID, m.RecipientID)
			case !m.Direction.Valid():
				t.Errorf("message %d: direction %q", i, m.Direction)
			case m.Timestamp.IsZero() || m.Timestamp.Unix() <= 0:
				t.Errorf("message %d: timestamp %v", i, m.Timestamp)
			}
			seen[mid] = true
		}
		if got, want := d.Counts.Messages+d.Counts.Echoes+d.Counts.Standby, len(d.Messages); got != want {
			t.Errorf("counted %d messages, echoes and standby, kept %d", got, want)
		}
		if got, want := d.Counts.Invalid, len(d.Invalid); got != want {
			t.Errorf("counted %d invalid, gave %d reasons", got, want)
		}
		if got, want := d.Counts.Edits, len(d.Edits); got != want {
			t.Errorf("counted %d edits, kept %d", got, want)
		}
		for i, e := range d.Edits {
			if e.MID == "" {
				t.Errorf("edit %d has no mid", i)
			}
		}
		names := map[string]bool{}
		for _, n := range d.Unknown {
			if names[n] {
				t.Errorf("unknown name %q listed twice", n)
			}
			names[n] = true
		}
		if len(d.Unknown) > 32 {
			t.Errorf("unknown: got %d names, want at most 32", len(d.Unknown))
		}
		if len(d.Unknown) > 0 && d.Counts.Other == 0 {
			t.Errorf("unknown names %q with no item counted as other", d.Unknown)
		}
		if got, want := d.Counts.Unsends, len(d.Unsends); got != want {
			t.Errorf("counted %d unsends, kept %d", got, want)
		}
	})
}

func FuzzVerifySignature(f *testing.F) {
	for _, body := range sampleBodies(f) {
		f.Add([]byte("app-secret"), body, "sha256=00")
	}
	f.Add([]byte("k"), []byte{}, "")
	f.Add([]byte{}, []byte("x"), "sha256="+strings.Repeat("A", 64))

	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		err := instagram.VerifySignature(secret, body, header)
		if verr := instagram.NewVerifier(secret).Verify(body, header); !errors.Is(verr, err) {
			t.Fatalf("Verifier says %v, VerifySignature %v", verr, err)
		}
		if err == nil && !strings.EqualFold(header, instagram.Sign(secret, body)) {
			t.Fatalf("header %q verified but is not the body's signature", header)
		}
		if err != nil && !errors.Is(err, instagram.ErrSignatureMissing) && !errors.Is(err, instagram.ErrSignatureInvalid) {
			t.Fatalf("unexpected error %v", err)
		}

		good := instagram.Sign(secret, body)
		err = instagram.VerifySignature(secret, body, good)
		if len(secret) == 0 {
			if err == nil {
				t.Fatal("an empty secret verified a signature")
			}
			return
		}
		if err != nil {
			t.Fatalf("own signature does not verify: %v", err)
		}
		if len(body) > 0 {
			flipped := append([]byte(nil), body...)
			flipped[len(flipped)/2] ^= 0x01
			if err := instagram.VerifySignature(secret, flipped, good); !errors.Is(err, instagram.ErrSignatureInvalid) {
				t.Fatalf("body with a flipped byte: got %v, want ErrSignatureInvalid", err)
			}
		}
	})
}
