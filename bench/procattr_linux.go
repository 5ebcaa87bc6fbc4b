package main

import "syscall"

// peerProcAttr makes a peer die with the bench: one that dies (a signal,
// a closed pipe) takes its peers along, which left running would load
// every later measurement.
func peerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
