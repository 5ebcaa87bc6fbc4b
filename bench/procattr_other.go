//go:build !linux

package main

import (
	"os"
	"syscall"
	"time"
)

// peerProcAttr: only Linux can tie a child's life to its parent's.
func peerProcAttr() *syscall.SysProcAttr { return nil }

var began = time.Now()

// threadCPU: elsewhere the calibration counts wall-clock time.
func threadCPU() time.Duration { return time.Since(began) }

// datasync: elsewhere, fsync.
func datasync(f *os.File) error { return f.Sync() }

// diskUsage: elsewhere, the file's length.
func diskUsage(info os.FileInfo) int64 { return info.Size() }
