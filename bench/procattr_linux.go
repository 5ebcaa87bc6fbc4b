package main

import (
	"os"
	"syscall"
	"time"
)

// peerProcAttr makes a peer die with the bench: one that dies (a signal,
// a closed pipe) takes its peers along, which left running would load
// every later measurement.
func peerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// threadCPU is the CPU time (user and system) the calling thread has used.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const rusageThread = 1 // RUSAGE_THREAD

// datasync is what the journal calls to make a write durable.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// diskUsage is the space a file takes on disk (allocated blocks).
func diskUsage(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
