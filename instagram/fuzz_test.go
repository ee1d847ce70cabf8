package instagram_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

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

	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := instagram.Parse(body)
		if err != nil {
			if !errors.Is(err, instagram.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
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
		if got, want := d.Counts.Messages+d.Counts.Echoes, len(d.Messages); got != want {
			t.Errorf("counted %d messages and echoes, kept %d", got, want)
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
