package domain_test

import (
	"testing"
	"time"

	"igmirror/domain"
)

// Ids of the sample business account and customers.
const (
	business = "17841400000000001"
	customer = "5582201937461123"
	other    = "6610293847561290"
)

// t0 is an Instagram timestamp every test message is placed relative to.
var t0 = time.Date(2025, 11, 21, 23, 6, 40, 123_000_000, time.UTC)

// newMsg builds a valid pending inbound message from customer; mid ""
// gives a message without an Instagram id. opts adjust it before Validate.
func newMsg(t testing.TB, mid string, opts ...func(*domain.Message)) domain.Message {
	t.Helper()
	m := domain.Message{
		SenderID:     customer,
		RecipientID:  business,
		Direction:    domain.Inbound,
		MessageText:  "text of " + mid,
		Timestamp:    t0,
		MirrorStatus: domain.MirrorPending,
	}
	if mid != "" {
		m.InstagramMessageID = &mid
	}
	for _, o := range opts {
		o(&m)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("newMsg %q: %v", mid, err)
	}
	return m
}

func outbound(m *domain.Message) {
	m.Direction = domain.Outbound
	m.SenderID, m.RecipientID = business, customer
}

func withStatus(s domain.MirrorStatus) func(*domain.Message) {
	return func(m *domain.Message) { m.MirrorStatus = s }
}

func at(ts time.Time) func(*domain.Message) {
	return func(m *domain.Message) { m.Timestamp = ts }
}

func from(sender string) func(*domain.Message) {
	return func(m *domain.Message) { m.SenderID = sender }
}
