//go:build !unix

package sqlite

import "os"

// linkCount is how many names the file has; unknown here, so one.
func linkCount(os.FileInfo) uint64 { return 1 }
