//go:build !unix

package ecfile

// freeSpace is unknown here: no guard.
func freeSpace(string) (uint64, bool) { return 0, false }
