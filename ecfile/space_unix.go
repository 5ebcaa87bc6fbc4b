//go:build unix

package ecfile

import "syscall"

// freeSpace is the space left to unprivileged users on dir's disk.
func freeSpace(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
