package crdtstate

import (
	"os"
	"syscall"
)

// datasync makes f's data durable without flushing its inode's timestamps:
// a journal segment is created at its full size, so an append changes only
// data and the modification time, and fdatasync skips the latter.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}
