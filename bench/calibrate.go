package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// calibration is how long this machine takes, right now, for a fixed piece
// of work like the peers' (a map of CID-sized keys, hashing, small
// writes and reads on a socket), on one thread before any peer starts. This
// machine's speed drifts by ±20 % within an evening, and every process's
// CPU a pin moves with it: figures from runs whose calibrations differ
// much are not comparable.
type calibration struct {
	maps, hashing, syscalls time.Duration
}

func (c calibration) String() string {
	total := c.maps + c.hashing + c.syscalls
	return fmt.Sprintf("%d ms of CPU (map %d, sha256 %d, socket %d)",
		total.Milliseconds(), c.maps.Milliseconds(), c.hashing.Milliseconds(), c.syscalls.Milliseconds())
}

// calibrate measures the three parts of the calibration, each the best of
// three rounds (the least disturbed by other work on the machine).
func calibrate() calibration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	best := func(f func()) time.Duration {
		var min time.Duration
		for i := 0; i < 3; i++ {
			t := threadCPU()
			f()
			if d := threadCPU() - t; i == 0 || d < min {
				min = d
			}
		}
		return min
	}
	var c calibration
	c.maps = best(func() {
		m := make(map[string][]byte)
		key := []byte("/pinring/bench/state/s/k/pins/bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/v")
		for i := 0; i < 200000; i++ {
			for j, n := 32, i; j < 40; j, n = j+1, n/26 {
				key[j] = byte('a' + n%26)
			}
			m[string(key)] = key[:64:64]
		}
		for k := range m {
			delete(m, k)
		}
	})
	buf := make([]byte, 1<<20)
	c.hashing = best(func() {
		for i := 0; i < 64; i++ {
			sum := sha256.Sum256(buf)
			buf[0] = sum[0]
		}
	})
	// A Unix socket pair, written and read back by the same thread: the
	// socket layer's cost without a wake-up.
	if fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0); err == nil {
		defer syscall.Close(fds[0])
		defer syscall.Close(fds[1])
		c.syscalls = best(func() {
			for i := 0; i < 100000; i++ {
				syscall.Write(fds[0], buf[:256])
				syscall.Read(fds[1], buf[256:512])
			}
		})
	}
	return c
}

// diskFlush is what one durable journal write costs on the disk under
// dir right now: a 4 KiB write over an allocated block, then datasync (what
// the journal does for each group of writes), the median of 300.
type diskFlush struct {
	wall, cpu time.Duration
}

func (d diskFlush) String() string {
	return fmt.Sprintf("%d µs a 4 KiB write and fdatasync (%d µs of CPU)", d.wall.Microseconds(), d.cpu.Microseconds())
}

func calibrateDisk(dir string) (diskFlush, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.CreateTemp(dir, "pinring-calibrate-*")
	if err != nil {
		return diskFlush{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const n, size = 300, 4096
	block := make([]byte, size)
	if _, err := f.Write(make([]byte, n*size)); err != nil {
		return diskFlush{}, err
	}
	if err := f.Sync(); err != nil {
		return diskFlush{}, err
	}
	walls := make([]time.Duration, n)
	cpus := make([]time.Duration, n)
	for i := range n {
		block[0] = byte(i)
		t, c := time.Now(), threadCPU()
		if _, err := f.WriteAt(block, int64(i*size)); err != nil {
			return diskFlush{}, err
		}
		if err := datasync(f); err != nil {
			return diskFlush{}, err
		}
		cpus[i], walls[i] = threadCPU()-c, time.Since(t)
	}
	slices.Sort(walls)
	slices.Sort(cpus)
	return diskFlush{wall: walls[n/2], cpu: cpus[n/2]}, nil
}
