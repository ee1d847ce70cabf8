// Package instagram is igmirror's Instagram edge: it checks the
// X-Hub-Signature-256 of a webhook delivery, turns the delivery into
// domain messages, and looks up a customer's username in the Graph API.
//
// It knows Meta's wire formats and nothing of storage or HTTP routing;
// the app package decides what a parsed delivery means for the store.
package instagram

import "errors"

// Sentinel errors of Parse and VerifySignature. The webhook handler maps
// ErrMalformed to 400, ErrSignatureMissing to 401 and ErrSignatureInvalid
// to 403.
var (
	ErrMalformed        = errors.New("malformed instagram delivery")
	ErrSignatureMissing = errors.New("missing X-Hub-Signature-256")
	ErrSignatureInvalid = errors.New("invalid X-Hub-Signature-256")
)
