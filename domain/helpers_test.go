package domain_test

import (
	"time"
)

// Ids of the sample business account and customers.
const (
	business = "17841400000000001"
	customer = "5582201937461123"
	other    = "6610293847561290"
)

// t0 is an Instagram timestamp every test message is placed relative to.
var t0 = time.Date(2025, 11, 21, 23, 6, 40, 123_000_000, time.UTC)
