// Package restapi serves Pinring's REST API, compatible with IPFS Cluster's
// (same paths, query parameters, JSON fields, status strings and
// streaming), plus Pinring's own endpoints. It holds no business logic: every
// request becomes one call on a Backend.
package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/httpserve"
	"github.com/pinring/pinring/restapi/auth"
	"github.com/pinring/pinring/restapi/ui"
)

var logger = logging.Logger("restapi")

// Backend is what the REST API needs of the peer (api.RESTBackend).
type Backend = api.RESTBackend

// Server is the REST API server; its listener's lifecycle (Addr, Start,
// Shutdown) is httpserve's, which the other two APIs share.
type Server struct {
	*httpserve.Server
	cfg     Config
	backend Backend
	ex      Extras
}

// Extras are the optional parts of the server.
type Extras struct {
	// Handlers are mounted beside the API's routes (pattern → handler),
	// e.g. "GET /metrics".
	Handlers map[string]http.Handler
	// Auth, when set and enabled, authenticates every request.
	Auth *auth.Auth
	// Observe, when set, is told each request's route pattern (as
	// registered, "unmatched" for none), status code and duration.
	Observe func(route string, code int, d time.Duration)
	// Starting, when set, says what the peer is doing while it starts
	// ("" once it is ready). Until then every route but GET /version and
	// the dashboard's files answers 503 with that message, without
	// reaching the Backend.
	Starting func() string
}

// New validates the config and binds the listener (so the address is known
// and a taken port fails start-up), without serving yet.
func New(cfg Config, b Backend, ex ...Extras) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, backend: b}
	if len(ex) > 0 {
		s.ex = ex[0]
	}
	addr, _ := config.ParseListen(cfg.Listen)
	hs, err := httpserve.Listen(addr, "REST API", &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.IdleTimeout.D(),
	})
	if err != nil {
		return nil, config.Errf("api.listen", cfg.Listen, "cannot listen: %v", err)
	}
	if cfg.TLS() {
		hs.UseTLS(cfg.TLSCertFile, cfg.TLSKeyFile)
	}
	s.Server = hs
	return s, nil
}

// Handler returns the API's routes (exported for tests).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /id", s.id)
	mux.HandleFunc("GET /version", s.version)
	mux.HandleFunc("GET /peers", s.peers)
	mux.HandleFunc("DELETE /peers/{id}", s.peerRm)
	mux.HandleFunc("POST /audit/{cid}", s.audit)
	mux.HandleFunc("GET /admissions", s.admissions)
	mux.HandleFunc("POST /admissions/{id}", s.setAdmission)
	mux.HandleFunc("DELETE /admissions/{id}", s.setAdmission)
	mux.HandleFunc("GET /allocations", s.allocations)
	mux.HandleFunc("GET /allocations/{cid}", s.allocation)
	mux.HandleFunc("GET /pins", s.statusAll)
	mux.HandleFunc("GET /pins/{cid}", s.status)
	mux.HandleFunc("POST /pins/recover", s.recoverAll)
	mux.HandleFunc("POST /pins/{cid}/recover", s.recover)
	mux.HandleFunc("POST /pins/{arg...}", s.pin)
	mux.HandleFunc("DELETE /pins/{arg...}", s.unpin)
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /health/report", s.healthReport)
	mux.HandleFunc("GET /state/digest", s.digest)
	mux.HandleFunc("GET /monitor/metrics", s.metricNames)
	mux.HandleFunc("GET /monitor/metrics/{name}", s.metrics)
	mux.HandleFunc("GET /health/alerts", s.alerts)
	mux.HandleFunc("GET /health/bandwidth", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.backend.Bandwidth(r.Context()))
	})
	mux.HandleFunc("POST /ipfs/gc", s.repoGC)
	mux.HandleFunc("GET /health/graph", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.backend.Graph(r.Context()))
	})
	mux.Handle("GET /ui/", ui.Handler("/ui/"))
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusFound) })
	// Progress goes out while the upload still comes in.
	mux.Handle("POST /add", httpserve.FullDuplex(http.HandlerFunc(s.add)))
	mux.HandleFunc("GET /ec/{cid}", s.ecGet)
	mux.HandleFunc("POST /ec/repair", s.ecRepair)
	mux.HandleFunc("POST /ec/repair/{cid}", s.ecRepair)
	mux.HandleFunc("POST /token", s.tokenNew)
	mux.HandleFunc("DELETE /token/{id}", s.tokenRevoke)
	for pattern, h := range s.ex.Handlers {
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	addr, _ := config.ParseListen(s.cfg.Listen)
	return httpserve.SameOrigin(httpserve.IsLoopback(addr), func(w http.ResponseWriter, code int, err error) {
		writeError(w, code, err.Error())
	}, s.observe(s.authenticate(s.whenReady(s.limitBody(mux)))))
}

// whenReady answers 503, with what the peer is doing, while it starts.
func (s *Server) whenReady(next http.Handler) http.Handler {
	if s.ex.Starting == nil {
		return next
	}
	gated := httpserve.WhileStarting(s.ex.Starting, func(w http.ResponseWriter, msg string) {
		writeError(w, http.StatusServiceUnavailable, msg)
	}, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/version" || r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/") {
			next.ServeHTTP(w, r)
			return
		}
		gated.ServeHTTP(w, r)
	})
}

type callerKey struct{}

// authenticate refuses requests without valid credentials (401) and
// writes with read-only ones (403), before anything runs.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if !s.ex.Auth.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write := r.Method != http.MethodGet && r.Method != http.MethodHead
		caller, err := s.ex.Auth.Check(r, write)
		if errors.Is(err, api.ErrForbidden) {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="pinring"`)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)))
	})
}

// tokenNew issues a token to the password-authenticated caller:
// ?ttl=24h&read_only=true.
func (s *Server) tokenNew(w http.ResponseWriter, r *http.Request) {
	if !s.ex.Auth.Enabled() {
		writeError(w, http.StatusBadRequest, "tokens need auth: configure api.basic_auth_credentials on this peer")
		return
	}
	caller, _ := r.Context().Value(callerKey{}).(auth.Caller)
	if !caller.Basic {
		writeError(w, http.StatusForbidden, "tokens are issued to a user and password (--basic-auth), not to another token")
		return
	}
	ttl := 24 * time.Hour
	if v := r.URL.Query().Get("ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl %q: want a positive duration such as 24h", v))
			return
		}
		ttl = d
	}
	ro, err := api.ParseBool(r.URL.Query().Get("read_only"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "read_only: "+err.Error())
		return
	}
	tok, err := s.ex.Auth.Issue(caller.User, ttl, ro)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tok)
}

// tokenRevoke revokes a token by its ID (or the whole token).
func (s *Server) tokenRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.ex.Auth.Enabled() {
		writeError(w, http.StatusBadRequest, "tokens need auth: configure api.basic_auth_credentials on this peer")
		return
	}
	caller, _ := r.Context().Value(callerKey{}).(auth.Caller)
	id, err := s.ex.Auth.Revoke(r.PathValue("id"), caller)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"revoked": id})
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush keeps streaming responses streaming.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer (trailers).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// observe reports each request's route, code and duration to Observe.
func (s *Server) observe(next http.Handler) http.Handler {
	if s.ex.Observe == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		s.ex.Observe(route, code, time.Since(start))
	})
}

// limitBody refuses bodies over MaxBodyBytes with 413 before any handler
// runs, so nothing is half-applied.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBodyBytes && r.URL.Path != "/add" {
			writeError(w, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("request body of %d bytes is over the limit of %d bytes", r.ContentLength, s.cfg.MaxBodyBytes))
			return
		}
		if r.URL.Path == "/add" {
			next.ServeHTTP(w, r) // uploads stream; they are not bounded by max_body_bytes
			return
		}
		if r.Body != nil && r.ContentLength != 0 {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge,
					fmt.Sprintf("request body is over the limit of %d bytes", s.cfg.MaxBodyBytes))
				return
			}
			r.Body = io.NopCloser(strings.NewReader(string(body)))
		}
		next.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Error{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	var p *api.Pin
	switch v := v.(type) {
	case api.Pin:
		p = &v
	case *api.Pin:
		p = v
	}
	if p != nil {
		// On an error, encoding/json below fails the same way.
		if b, err := p.AppendJSON(make([]byte, 0, 640)); err == nil {
			w.Write(append(b, '\n'))
			return
		}
	}
	if err := json.NewEncoder(w).Encode(v); err != nil {
		logger.Debugf("writing response: %s", err)
	}
}

// backendError maps a Backend error to an HTTP status.
func backendError(w http.ResponseWriter, err error) {
	writeError(w, httpserve.StatusOf(err), err.Error())
}

// stream writes every item run emits as one JSON object per line. What
// was written goes out every 256 items and, for a slow producer, within
// 100 ms. An error after the first byte goes into the X-Stream-Error
// trailer, as IPFS Cluster does.
func stream[T any](w http.ResponseWriter, r *http.Request, run func(ctx context.Context, emit func(T) error) error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Trailer", "X-Stream-Error")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex // w, between emit and the flusher below
	dirty := false
	done := make(chan struct{})
	if flusher != nil {
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					mu.Lock()
					if dirty {
						flusher.Flush()
						dirty = false
					}
					mu.Unlock()
				}
			}
		}()
	}
	enc := json.NewEncoder(w)
	var buf []byte
	n := 0
	err := run(r.Context(), func(item T) error {
		mu.Lock()
		defer mu.Unlock()
		var err error
		if p, ok := any(item).(api.Pin); ok {
			// AppendJSON fails only where encoding/json would.
			if buf, err = p.AppendJSON(buf[:0]); err == nil {
				_, err = w.Write(append(buf, '\n'))
			}
		} else {
			err = enc.Encode(item)
		}
		n++
		dirty = true
		if flusher != nil && n%256 == 0 {
			flusher.Flush()
			dirty = false
		}
		return err
	})
	close(done)
	if err != nil && r.Context().Err() == nil {
		w.Header().Set("X-Stream-Error", err.Error())
	}
}

func parseCidParam(w http.ResponseWriter, s string) (api.Cid, bool) {
	c, err := api.ParseCid(s)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return api.Cid{}, false
	}
	return c, true
}

func boolParam(w http.ResponseWriter, r *http.Request, name string) (bool, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter %s=%q: want true or false", name, v))
		return false, false
	}
	return b, true
}

func (s *Server) id(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.backend.ID(r.Context()))
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.VersionInfo{Version: api.Version})
}

func (s *Server) peers(w http.ResponseWriter, r *http.Request) {
	stream(w, r, s.backend.Peers)
}

// health answers as IPFS Cluster does, 204 with no body, when the peer is
// healthy (its clients read nothing else); otherwise 503 with the report.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	h := s.backend.Health(r.Context())
	if h.Healthy {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, h)
}

// healthReport is the peer's report on itself: 200 when healthy, 503 (the
// same body) when not.
func (s *Server) healthReport(w http.ResponseWriter, r *http.Request) {
	h := s.backend.Health(r.Context())
	code := http.StatusOK
	if !h.Healthy {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

func (s *Server) metricNames(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, nonNil(s.backend.MetricNames(r.Context())))
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, nonNil(s.backend.Metrics(r.Context(), r.PathValue("name"))))
}

// peerRm is IPFS Cluster's "peers rm": here a peer removes only itself
// (it announces its departure and stops).
func (s *Server) peerRm(w http.ResponseWriter, r *http.Request) {
	id, err := peer.Decode(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid peer ID %q: %v", r.PathValue("id"), err))
		return
	}
	if err := s.backend.Leave(r.Context(), id); err != nil {
		backendError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// audit challenges the peers holding a pin (?peer=: one of them).
func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	c, ok := parseCidParam(w, r.PathValue("cid"))
	if !ok {
		return
	}
	var pid peer.ID
	if v := r.URL.Query().Get("peer"); v != "" {
		var err error
		if pid, err = peer.Decode(v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid peer ID %q: %v", v, err))
			return
		}
	}
	res, err := s.backend.Audit(r.Context(), c, pid)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(res))
}

func (s *Server) admissions(w http.ResponseWriter, r *http.Request) {
	list, err := s.backend.Admissions(r.Context())
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(list))
}

// setAdmission admits (POST) or revokes (DELETE) a peer; ?note= is kept
// with the record.
func (s *Server) setAdmission(w http.ResponseWriter, r *http.Request) {
	id, err := peer.Decode(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid peer ID %q: %v", r.PathValue("id"), err))
		return
	}
	a, err := s.backend.SetAdmission(r.Context(), id, r.Method == http.MethodDelete, r.URL.Query().Get("note"))
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, nonNil(s.backend.Alerts(r.Context())))
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func (s *Server) digest(w http.ResponseWriter, r *http.Request) {
	d, err := s.backend.Digest(r.Context())
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// pinTarget resolves the {arg...} of /pins/: a CID, or an
// /ipfs|ipns|ipld/ path.
func (s *Server) pinTarget(w http.ResponseWriter, r *http.Request) (api.Cid, bool) {
	arg := r.PathValue("arg")
	if ns, _, ok := strings.Cut(arg, "/"); ok && (ns == "ipfs" || ns == "ipns" || ns == "ipld") {
		c, err := s.backend.ResolvePath(r.Context(), "/"+arg)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("cannot resolve /%s: %v", arg, err))
			return api.Cid{}, false
		}
		return c, true
	}
	return parseCidParam(w, arg)
}

func (s *Server) pin(w http.ResponseWriter, r *http.Request) {
	c, ok := s.pinTarget(w, r)
	if !ok {
		return
	}
	opts, err := api.ParsePinOptions(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	p := api.Pin{Cid: c, Type: api.DataType, MaxDepth: -1, PinOptions: opts}
	if opts.Mode == api.PinModeDirect {
		p.MaxDepth = 0
	}
	res, err := s.backend.Pin(r.Context(), p)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) unpin(w http.ResponseWriter, r *http.Request) {
	c, ok := s.pinTarget(w, r)
	if !ok {
		return
	}
	res, err := s.backend.Unpin(r.Context(), c)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) allocation(w http.ResponseWriter, r *http.Request) {
	c, ok := parseCidParam(w, r.PathValue("cid"))
	if !ok {
		return
	}
	p, err := s.backend.PinGet(r.Context(), c)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) allocations(w http.ResponseWriter, r *http.Request) {
	types := map[api.PinType]bool{}
	for f := range strings.SplitSeq(r.URL.Query().Get("filter"), ",") {
		switch f = strings.TrimSpace(f); f {
		case "", "all":
		default:
			t, err := api.ParsePinType(f)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("filter: %v (want pin, meta-pin, clusterdag-pin, shard-pin or all)", err))
				return
			}
			types[t] = true
		}
	}
	stream(w, r, func(ctx context.Context, emit func(api.Pin) error) error {
		return s.backend.Pins(ctx, func(p api.Pin) error {
			if len(types) == 0 || types[p.Type] {
				return emit(p)
			}
			return nil
		})
	})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	s.onePin(w, r, s.backend.Status)
}

// onePin serves the {cid} + ?local= endpoints answering one GlobalPinInfo.
func (s *Server) onePin(w http.ResponseWriter, r *http.Request, call func(context.Context, api.Cid, bool) (api.GlobalPinInfo, error)) {
	c, ok := parseCidParam(w, r.PathValue("cid"))
	if !ok {
		return
	}
	local, ok := boolParam(w, r, "local")
	if !ok {
		return
	}
	gpi, err := call(r.Context(), c, local)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, gpi)
}

func (s *Server) statusAll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	filter, err := api.ParseStatusFilter(q.Get("filter"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	local, ok := boolParam(w, r, "local")
	if !ok {
		return
	}
	var cids []api.Cid
	for part := range strings.SplitSeq(q.Get("cids"), ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		c, ok := parseCidParam(w, part)
		if !ok {
			return
		}
		cids = append(cids, c)
	}
	if len(cids) > 0 {
		stream(w, r, func(ctx context.Context, emit func(api.GlobalPinInfo) error) error {
			for _, c := range cids {
				gpi, err := s.backend.Status(ctx, c, local)
				if err != nil {
					return err
				}
				if gpi.Keep(filter) {
					if err := emit(gpi); err != nil {
						return err
					}
				}
			}
			return nil
		})
		return
	}
	stream(w, r, func(ctx context.Context, emit func(api.GlobalPinInfo) error) error {
		return s.backend.StatusAll(ctx, filter, local, emit)
	})
}

func (s *Server) repoGC(w http.ResponseWriter, r *http.Request) {
	local, ok := boolParam(w, r, "local")
	if !ok {
		return
	}
	g, err := s.backend.RepoGC(r.Context(), local)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) recover(w http.ResponseWriter, r *http.Request) {
	s.onePin(w, r, s.backend.Recover)
}

func (s *Server) recoverAll(w http.ResponseWriter, r *http.Request) {
	local, ok := boolParam(w, r, "local")
	if !ok {
		return
	}
	stream(w, r, func(ctx context.Context, emit func(api.GlobalPinInfo) error) error {
		return s.backend.RecoverAll(ctx, local, emit)
	})
}
