package instagram

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strings"
	"sync"
)

// signaturePrefix starts every X-Hub-Signature-256 value Meta sends.
const signaturePrefix = "sha256="

// VerifySignature checks header, the X-Hub-Signature-256 value
// ("sha256=<hex>"), against the HMAC-SHA256 of the exact raw body keyed
// with secret. Hex digits may be upper or lower case. It returns
// ErrSignatureMissing for an empty header and ErrSignatureInvalid for
// anything else that does not match, including an empty secret: a key
// anyone can guess would let anyone write into the store.
func VerifySignature(secret, body []byte, header string) error {
	got, err := parseSignature(secret, header)
	if err != nil {
		return err
	}
	var want [sha256.Size]byte
	if !hmac.Equal(got[:], sum(secret, body, want[:0])) {
		return ErrSignatureInvalid
	}
	return nil
}

// parseSignature decodes header's digest, refusing an empty secret.
func parseSignature(secret []byte, header string) ([sha256.Size]byte, error) {
	var got [sha256.Size]byte
	if header == "" {
		return got, ErrSignatureMissing
	}
	if len(secret) == 0 {
		return got, ErrSignatureInvalid
	}
	hexSum, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok || len(hexSum) != hex.EncodedLen(sha256.Size) {
		return got, ErrSignatureInvalid
	}
	if _, err := hex.Decode(got[:], []byte(hexSum)); err != nil {
		return got, ErrSignatureInvalid
	}
	return got, nil
}

// Verifier is VerifySignature for one secret, safe for concurrent use. It
// keeps its HMAC states for reuse, where VerifySignature builds one (and
// its two SHA-256 states) per call.
type Verifier struct {
	secret []byte
	macs   sync.Pool // of hash.Hash keyed with secret
}

// NewVerifier returns a Verifier for secret (copied).
func NewVerifier(secret []byte) *Verifier {
	v := &Verifier{secret: bytes.Clone(secret)}
	v.macs.New = func() any { return hmac.New(sha256.New, v.secret) }
	return v
}

// Verify is VerifySignature(secret, body, header).
func (v *Verifier) Verify(body []byte, header string) error {
	got, err := parseSignature(v.secret, header)
	if err != nil {
		return err
	}
	mac := v.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write(body)
	var want [sha256.Size]byte
	ok := hmac.Equal(got[:], mac.Sum(want[:0]))
	v.macs.Put(mac)
	if !ok {
		return ErrSignatureInvalid
	}
	return nil
}

// Sign returns the X-Hub-Signature-256 value Meta would send for body:
// "sha256=" and the lower-case hex HMAC-SHA256 keyed with secret.
func Sign(secret, body []byte) string {
	var buf [sha256.Size]byte
	return signaturePrefix + hex.EncodeToString(sum(secret, body, buf[:0]))
}

// sum appends the HMAC-SHA256 of body to dst.
func sum(secret, body, dst []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return mac.Sum(dst)
}
