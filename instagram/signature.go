package instagram

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
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
	if header == "" {
		return ErrSignatureMissing
	}
	if len(secret) == 0 {
		return ErrSignatureInvalid
	}
	hexSum, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok || len(hexSum) != hex.EncodedLen(sha256.Size) {
		return ErrSignatureInvalid
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(hexSum)); err != nil {
		return ErrSignatureInvalid
	}
	var want [sha256.Size]byte
	if !hmac.Equal(got[:], sum(secret, body, want[:0])) {
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
