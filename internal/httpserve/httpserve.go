// Package httpserve runs one HTTP listener in the background, with TLS
// when given a certificate, and stops it cleanly: the part the peer's
// three APIs (REST, Pinning Service API, IPFS proxy) share, with the 503
// they answer while the peer starts and the mapping of errors to status
// codes. WhileStarting is the 503 all
// three APIs, the REST API included, answer while the peer starts.
package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"

	logging "github.com/ipfs/go-log/v2"
)

// Server is a listener and the HTTP server on it.
type Server struct {
	Srv               *http.Server
	ln                net.Listener
	name              string
	certFile, keyFile string
	done              chan struct{}
}

// Listen binds addr (host:port) for srv; name is used in logs.
func Listen(addr, name string, srv *http.Server) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Server{Srv: srv, ln: ln, name: name, done: make(chan struct{})}, nil
}

// UseTLS serves HTTPS with these files; call it before Start.
func (s *Server) UseTLS(certFile, keyFile string) { s.certFile, s.keyFile = certFile, keyFile }

// Addr is the host:port listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Release frees the listener of a server that was never started.
func (s *Server) Release() error { return s.ln.Close() }

// Start serves in the background.
func (s *Server) Start() {
	go func() {
		defer close(s.done)
		var err error
		if s.certFile != "" {
			err = s.Srv.ServeTLS(s.ln, s.certFile, s.keyFile)
		} else {
			err = s.Srv.Serve(s.ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			logging.Logger("http").Errorf("%s: %s", s.name, err)
		}
	}()
}

// Shutdown stops accepting requests and waits for those in flight until
// ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.Srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.Srv.Close())
	}
	select {
	case <-s.done:
	case <-ctx.Done():
	}
	return err
}

// WhileStarting answers every request with refuse (which writes a 503 in
// the API's own error format) and Retry-After: 1 for as long as starting
// says what the peer is doing, and passes requests to next once it says
// nothing. starting nil: next as it is.
func WhileStarting(starting func() string, refuse func(w http.ResponseWriter, msg string), next http.Handler) http.Handler {
	if starting == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if msg := starting(); msg != "" {
			w.Header().Set("Retry-After", "1")
			refuse(w, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}
