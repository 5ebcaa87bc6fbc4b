package pintracker

import (
	"time"

	"github.com/pinring/pinring/config"
)

// Config tunes the tracker.
type Config struct {
	// Concurrency is how many pin/unpin calls run against kubo at once.
	// Default 10.
	Concurrency int `json:"concurrency"`
	// MaxAttempts is how many times an operation is tried before it stays
	// in an error state until the next recover pass or a recover request.
	// Default 5.
	MaxAttempts int `json:"max_attempts"`
	// RetryBackoff is the wait after the first failure; it doubles after
	// each further failure up to RetryBackoffMax. Defaults 2s and 2m.
	RetryBackoff    config.Duration `json:"retry_backoff"`
	RetryBackoffMax config.Duration `json:"retry_backoff_max"`
	// RecoverInterval is how often the tracker compares the pinset with
	// kubo's pins, re-pins what kubo lost and retries errors. Default 5m
	// (as IPFS Cluster syncs with kubo): a pass reads the whole pinset.
	RecoverInterval config.Duration `json:"recover_interval"`
	// MaxQueue is the most operations kept outstanding (queued, running or
	// failed). Beyond it, new work waits in a pending list of bare CIDs
	// that a feeder moves into the queue as operations finish: the
	// tracker's memory stays bounded while a new peer takes on a large
	// pinset. Default 50000.
	MaxQueue int `json:"max_queue"`
	// PinBatch is the most pins sent to kubo in one pin/add call. kubo
	// pins content it already has ~40 % faster with 100–500 CIDs a call
	// than with one; if a grouped call fails, each pin is tried alone.
	// Default 128; 1 sends one CID a call.
	PinBatch int `json:"pin_batch"`
	// PinBatchWait is how long a worker lets a short queue of pins grow
	// before sending it to kubo, so that pins arriving one by one (each
	// acknowledged write, each merged delta) go in a few calls. Default
	// 20ms; 0 sends what is queued at once.
	PinBatchWait config.Duration `json:"pin_batch_wait"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Concurrency:     10,
		MaxAttempts:     5,
		RetryBackoff:    config.Duration(2 * time.Second),
		RetryBackoffMax: config.Duration(2 * time.Minute),
		RecoverInterval: config.Duration(5 * time.Minute),
		MaxQueue:        50_000,
		PinBatch:        128,
		PinBatchWait:    config.Duration(20 * time.Millisecond),
	}
}

// Validate checks the config without changing it.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 1:
		return config.Errf("tracker.concurrency", c.Concurrency, "must be at least 1")
	case c.MaxAttempts < 1:
		return config.Errf("tracker.max_attempts", c.MaxAttempts, "must be at least 1")
	case c.RetryBackoff <= 0:
		return config.Errf("tracker.retry_backoff", c.RetryBackoff.D(), "must be positive")
	case c.RetryBackoffMax < c.RetryBackoff:
		return config.Errf("tracker.retry_backoff_max", c.RetryBackoffMax.D(), "must be at least retry_backoff")
	case c.PinBatch < 1:
		return config.Errf("tracker.pin_batch", c.PinBatch, "must be at least 1")
	case c.PinBatchWait < 0:
		return config.Errf("tracker.pin_batch_wait", c.PinBatchWait.D(), "must not be negative")
	case c.MaxQueue < 1:
		return config.Errf("tracker.max_queue", c.MaxQueue, "must be at least 1")
	case c.RecoverInterval <= 0:
		return config.Errf("tracker.recover_interval", c.RecoverInterval.D(), "must be positive")
	}
	return nil
}
