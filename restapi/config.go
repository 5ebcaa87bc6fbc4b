package restapi

import (
	"time"

	"github.com/pinring/pinring/config"
)

// Config is the REST API listener.
type Config struct {
	// Listen is a multiaddr or host:port. Default /ip4/127.0.0.1/tcp/9094
	// (loopback only).
	Listen string `json:"listen"`
	// MaxBodyBytes is the largest request body accepted. Default 1 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// ReadHeaderTimeout bounds reading request headers. Default 30s.
	ReadHeaderTimeout config.Duration `json:"read_header_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 2m.
	IdleTimeout config.Duration `json:"idle_timeout"`
	// BasicAuthCredentials maps user names to bcrypt hashes of their
	// passwords ('cluster-peer hash-password' makes one). Set, every
	// request needs a password or a token. Required to listen beyond
	// loopback. Default {} (no auth, loopback only).
	BasicAuthCredentials map[string]string `json:"basic_auth_credentials"`
	// TLSCertFile and TLSKeyFile, both set, serve HTTPS (also on the
	// Pinning Service API). Default "" (plain HTTP).
	TLSCertFile string `json:"tls_cert_file"`
	TLSKeyFile  string `json:"tls_key_file"`
}

// TLS reports whether HTTPS is configured.
func (c Config) TLS() bool { return c.TLSCertFile != "" && c.TLSKeyFile != "" }

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Listen:               "/ip4/127.0.0.1/tcp/9094",
		MaxBodyBytes:         1 << 20,
		ReadHeaderTimeout:    config.Duration(30 * time.Second),
		IdleTimeout:          config.Duration(2 * time.Minute),
		BasicAuthCredentials: map[string]string{},
	}
}

// Validate checks the config without changing it.
func (c Config) Validate() error {
	if _, err := config.ParseListen(c.Listen); err != nil {
		return config.Errf("api.listen", c.Listen, "%v", err)
	}
	if c.MaxBodyBytes < 1 {
		return config.Errf("api.max_body_bytes", c.MaxBodyBytes, "must be positive")
	}
	if c.ReadHeaderTimeout <= 0 {
		return config.Errf("api.read_header_timeout", c.ReadHeaderTimeout.D(), "must be positive")
	}
	if c.IdleTimeout <= 0 {
		return config.Errf("api.idle_timeout", c.IdleTimeout.D(), "must be positive")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return config.Errf("api.tls_cert_file", c.TLSCertFile, "TLS needs both api.tls_cert_file and api.tls_key_file")
	}
	return nil
}
