package domain

import "time"

// Delivery is one webhook delivery the service answered 200, as the
// journal keeps it: the exact bytes and signature header, so that it can
// be replayed or re-posted verifiably, and what it yielded.
type Delivery struct {
	ID         int64          `json:"id"`
	ReceivedAt time.Time      `json:"received_at"`
	Signature  string         `json:"signature,omitempty"` // the X-Hub-Signature-256 header as received
	Size       int            `json:"size"`
	Body       []byte         `json:"-"`
	Stored     int            `json:"stored"`
	Duplicates int            `json:"duplicates"`
	Unsent     int            `json:"unsent"`
	Edited     int            `json:"edited"`
	Items      map[string]int `json:"items"` // items by kind, as the parser counted them
}

// DeliveryFilter selects journal records. Zero fields do not filter.
type DeliveryFilter struct {
	Since, Until time.Time // on ReceivedAt; Since inclusive, Until exclusive
	Limit        int
	Cursor       string
}
