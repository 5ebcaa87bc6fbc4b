//go:build !linux

package main

import "syscall"

// peerProcAttr: only Linux can tie a child's life to its parent's.
func peerProcAttr() *syscall.SysProcAttr { return nil }
