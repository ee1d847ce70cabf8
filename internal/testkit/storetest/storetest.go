// Package storetest is the conformance suite of the store's port
// (domain.Store). Every storage adapter runs it against a real database:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Opener { ... a fresh database ... })
//	}
//
// The suite checks what CONTRACT.md and the port promise, through the
// port only: dedupe by the engine's constraint, unsends and edits, list
// filters and paging under inserts, every mirror-state transition,
// leases and claims, reconcile candidates, status counts, the delivery
// journal, close and reopen.
//
// It never bounds how long anything takes; an asynchronous effect
// (MarkDropped, a lease lapsing) is waited for with check.Eventually.
package storetest

import (
	"testing"
	"time"

	"igmirror/domain"
)

// Options are what the suite varies between the instances it opens.
type Options struct {
	// InstanceID names the instance ("" = the adapter's default).
	InstanceID string
	// LeaseTimeout is the mirror lease's timeout; 0 = the adapter's default.
	LeaseTimeout time.Duration
	// NoRenew, for tests only, makes the instance take its lease once at
	// open and never renew it, so that the lease lapses after
	// LeaseTimeout while the instance stays open (a process that hangs or
	// lost the database). The adapter must honour it: the lease tests
	// depend on it. Close still releases the lease.
	NoRenew bool
}

// Opener opens a new store instance on the database of one test. Each
// call is a new instance (a new process, as far as leases go) on the same
// data; the opener closes it when the test ends, and Close may also be
// called earlier by the suite (a second Close must be harmless).
type Opener func(t *testing.T, o Options) domain.Store

// Run runs the whole suite. fresh is called once per test and returns an
// Opener on a new, empty database.
func Run(t *testing.T, fresh func(t *testing.T) Opener) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, fresh(t))
		})
	}
}

// testCase is one test of the suite.
type testCase struct {
	name string
	fn   func(t *testing.T, open Opener)
}

// cases lists the suite's tests; each file of the suite adds its own.
var cases []testCase

// register adds tests to the suite.
func register(name string, fn func(t *testing.T, open Opener)) {
	cases = append(cases, testCase{name, fn})
}
