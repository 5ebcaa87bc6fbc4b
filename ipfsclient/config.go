package ipfsclient

import (
	"time"

	"github.com/pinring/pinring/config"
)

// Config says how to reach kubo's RPC API.
type Config struct {
	// API is kubo's RPC address, a multiaddr or host:port.
	// Default /ip4/127.0.0.1/tcp/5001.
	API string `json:"api"`
	// PinTimeout cancels a pin when kubo reports no progress for this
	// long (it counts from the last progress, not from the start).
	// Default 2m.
	PinTimeout config.Duration `json:"pin_timeout"`
	// UnpinTimeout bounds one unpin. Default 3h (large DAGs).
	UnpinTimeout config.Duration `json:"unpin_timeout"`
	// RequestTimeout bounds every other call. Default 5m.
	RequestTimeout config.Duration `json:"request_timeout"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		API:            "/ip4/127.0.0.1/tcp/5001",
		PinTimeout:     config.Duration(2 * time.Minute),
		UnpinTimeout:   config.Duration(3 * time.Hour),
		RequestTimeout: config.Duration(5 * time.Minute),
	}
}

// Validate checks the config without changing it.
func (c Config) Validate() error {
	if _, err := config.ParseListen(c.API); err != nil {
		return config.Errf("ipfs.api", c.API, "%v", err)
	}
	for key, d := range map[string]config.Duration{"ipfs.pin_timeout": c.PinTimeout,
		"ipfs.unpin_timeout": c.UnpinTimeout, "ipfs.request_timeout": c.RequestTimeout} {
		if d <= 0 {
			return config.Errf(key, d.D(), "must be positive")
		}
	}
	return nil
}
