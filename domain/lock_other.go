//go:build !unix

package domain

// lockStore does nothing where flock(2) is missing: one service process
// per SQLite file is then up to the operator.
func lockStore(string) (func() error, error) { return func() error { return nil }, nil }
