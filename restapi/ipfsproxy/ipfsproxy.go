// Package ipfsproxy serves kubo's RPC API in front of the peer's kubo:
// pin/add, pin/rm, pin/ls, pin/update, add and repo/stat are answered by
// the cluster (pins go cluster-wide, pin/ls lists the cluster's pinset,
// repo/stat sums the cluster), and every other call is forwarded to kubo
// unchanged. A kubo CLI given `--api <proxy>` thus pins cluster-wide, and a
// cluster can be a member of a larger one by pointing the larger cluster's
// peer at this proxy as its "kubo" (clusters of clusters).
package ipfsproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	logging "github.com/ipfs/go-log/v2"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/httpserve"
	"github.com/pinring/pinring/restapi/client"
)

var logger = logging.Logger("ipfsproxy")

// Config is the listener.
type Config struct {
	// Listen is a multiaddr or host:port; "" disables the proxy.
	// Default "".
	Listen string `json:"listen"`
	// PinTimeout bounds how long pin/add waits for the cluster to pin (the
	// client sees the error). Default 10m.
	PinTimeout config.Duration `json:"pin_timeout"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Listen: "", PinTimeout: config.Duration(10 * time.Minute)}
}

// Validate checks the config without changing it.
func (c Config) Validate() error {
	if c.Listen != "" {
		if _, err := config.ParseListen(c.Listen); err != nil {
			return config.Errf("ipfsproxy.listen", c.Listen, "%v", err)
		}
	}
	if c.PinTimeout <= 0 {
		return config.Errf("ipfsproxy.pin_timeout", c.PinTimeout.D(), "must be positive")
	}
	return nil
}

// Backend is what the proxy needs of a peer (api.ProxyBackend).
type Backend = api.ProxyBackend

// Authorizer checks a request (api.Authorizer; nil: no auth).
type Authorizer = api.Authorizer

// Server is the running proxy.
type Server struct {
	*httpserve.Server
	cfg     Config
	backend Backend
	auth    Authorizer
	kubo    *httputil.ReverseProxy
	// starting says what the peer is doing until it is ready ("" once it
	// is).
	starting func() string
}

// WhileStarting has the calls the proxy answers itself (pin/*, add,
// repo/stat) answer 503 (Retry-After: 1) with what f says, for as long as
// f says something; the calls forwarded to kubo are forwarded as usual.
// Call it before Start.
func (s *Server) WhileStarting(f func() string) { s.starting = f }

// gated answers 503 while the peer starts, else runs h.
func (s *Server) gated(h http.HandlerFunc) http.Handler {
	return httpserve.WhileStarting(func() string {
		if s.starting == nil {
			return ""
		}
		return s.starting()
	}, func(w http.ResponseWriter, msg string) {
		kuboError(w, http.StatusServiceUnavailable, msg)
	}, h)
}

// New listens on cfg.Listen and forwards to the kubo RPC API at kuboAPI (a
// multiaddr or host:port).
func New(cfg Config, kuboAPI string, b Backend, auth Authorizer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hp, err := config.ParseListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	kp, err := config.ParseListen(kuboAPI)
	if err != nil {
		return nil, fmt.Errorf("ipfs.api %q: %v", kuboAPI, err)
	}
	target := &url.URL{Scheme: "http", Host: kp}
	s := &Server{cfg: cfg, backend: b, auth: auth}
	s.kubo = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = kp
			pr.Out.Header.Del("Authorization") // the proxy's credentials are not kubo's
		},
		FlushInterval: -1, // stream (add progress, logs, pubsub)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 30 * time.Second}
	if s.Server, err = httpserve.Listen(hp, "IPFS proxy", srv); err != nil {
		return nil, fmt.Errorf("IPFS proxy on %s: %w", hp, err)
	}
	return s, nil
}

// Handler routes the intercepted calls and forwards the rest.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/v0/pin/add", s.gated(s.pinAdd))
	mux.Handle("/api/v0/pin/rm", s.gated(s.pinRm))
	mux.Handle("/api/v0/pin/ls", s.gated(s.pinLs))
	mux.Handle("/api/v0/pin/update", s.gated(s.pinUpdate))
	// kubo answers an add (and others) while it still reads the upload;
	// the proxy streams both ways.
	mux.Handle("/api/v0/add", httpserve.FullDuplex(s.gated(s.add)))
	mux.Handle("/api/v0/repo/stat", s.gated(s.repoStat))
	mux.Handle("/", httpserve.FullDuplex(s.kubo))
	// Only the calls that read content or describe the node are reads;
	// every other call changes kubo or the pinset and needs a read-write
	// credential.
	write := func(r *http.Request) bool { return !readCalls[r.URL.Path] }
	refuse := func(w http.ResponseWriter, code int, err error) { kuboError(w, code, err.Error()) }
	addr, _ := config.ParseListen(s.cfg.Listen)
	return httpserve.SameOrigin(httpserve.IsLoopback(addr), refuse, httpserve.Authenticate(s.auth, write, refuse, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v0/") {
			// kubo accepts only POST on its RPC API; so does the proxy.
			kuboError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: the RPC API takes POST", r.Method, r.URL.Path))
			return
		}
		if call, ok := interceptedWithPathArgs(r.URL.Path); ok {
			// kubo takes arguments as path segments too: forwarded, such
			// a call would act on this kubo alone, not the cluster.
			kuboError(w, http.StatusBadRequest, fmt.Sprintf("%s: pass the arguments of %s as ?arg=…, not in the path", r.URL.Path, call))
			return
		}
		mux.ServeHTTP(w, r)
	})))
}

// intercepted are the calls the proxy answers itself.
var intercepted = []string{"/api/v0/pin/add", "/api/v0/pin/rm", "/api/v0/pin/ls", "/api/v0/pin/update",
	"/api/v0/add", "/api/v0/repo/stat"}

// interceptedWithPathArgs reports the intercepted call that path names
// with arguments in the path (/api/v0/pin/rm/<cid>).
func interceptedWithPathArgs(path string) (string, bool) {
	for _, c := range intercepted {
		if strings.HasPrefix(path, c+"/") {
			return c, true
		}
	}
	return "", false
}

// readCalls are the kubo calls a read-only credential may make through the
// proxy: reading content and the pinset, and describing the node. The rest
// (config, keys, names, MFS, the repository, swarm changes, shutdown, and
// anything not named here) need a read-write credential.
var readCalls = map[string]bool{
	"/api/v0/id": true, "/api/v0/version": true, "/api/v0/cat": true, "/api/v0/get": true, "/api/v0/ls": true,
	"/api/v0/refs": true, "/api/v0/resolve": true, "/api/v0/name/resolve": true, "/api/v0/dns": true,
	"/api/v0/dag/get": true, "/api/v0/dag/stat": true, "/api/v0/dag/resolve": true, "/api/v0/dag/export": true,
	"/api/v0/block/get": true, "/api/v0/block/stat": true, "/api/v0/cid/format": true, "/api/v0/cid/base32": true,
	"/api/v0/swarm/peers": true, "/api/v0/stats/bw": true, "/api/v0/bitswap/stat": true,
	"/api/v0/pin/ls": true, "/api/v0/repo/stat": true,
}

// kuboError answers as kubo does: {"Message", "Code", "Type": "error"}.
func kuboError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"Message": msg, "Code": 0, "Type": "error"})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Args are the arguments of an RPC call: repeated "arg" values and
// options, from the query (as kubo's clients send them).
type Args struct {
	Args []string
	Opts url.Values
}

// ParseArgs reads a call's arguments; want bounds how many args are
// accepted (min, max; max < 0: any).
func ParseArgs(q url.Values, min, max int) (Args, error) {
	a := Args{Args: q["arg"], Opts: q}
	if len(a.Args) < min {
		return a, fmt.Errorf("argument %q is required", "arg")
	}
	if max >= 0 && len(a.Args) > max {
		return a, fmt.Errorf("expected at most %d arguments, got %d", max, len(a.Args))
	}
	for _, s := range a.Args {
		if s == "" {
			return a, errors.New("an argument is empty")
		}
	}
	return a, nil
}

// Bool reads a boolean option (kubo's forms), def when absent.
func (a Args) Bool(name string, def bool) (bool, error) {
	v := a.Opts.Get(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def, fmt.Errorf("option %q: %q is not a boolean", name, v)
	}
	return b, nil
}

func (s *Server) resolve(ctx context.Context, arg string) (api.Cid, error) {
	if c, err := api.ParseCid(strings.TrimPrefix(arg, "/ipfs/")); err == nil {
		return c, nil
	}
	return s.backend.ResolvePath(ctx, arg)
}

// pinAdd pins every argument cluster-wide (default replication) and
// answers once each is pinned on at least one peer, as kubo answers once
// it holds the pin.
func (s *Server) pinAdd(w http.ResponseWriter, r *http.Request) {
	a, err := ParseArgs(r.URL.Query(), 1, -1)
	if err != nil {
		kuboError(w, http.StatusBadRequest, err.Error())
		return
	}
	recursive, err := a.Bool("recursive", true)
	if err != nil {
		kuboError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PinTimeout.D())
	defer cancel()
	var pinned []string
	for _, arg := range a.Args {
		c, err := s.resolve(ctx, arg)
		if err != nil {
			kuboError(w, http.StatusInternalServerError, fmt.Sprintf("pin: %v", err))
			return
		}
		pin := api.Pin{Cid: c, Type: api.DataType, MaxDepth: -1}
		if !recursive {
			pin.Mode, pin.MaxDepth = api.PinModeDirect, 0
		}
		if _, err := s.backend.Pin(ctx, pin); err != nil {
			kuboError(w, http.StatusInternalServerError, fmt.Sprintf("pin: %v", err))
			return
		}
		pinned = append(pinned, c.String())
	}
	for _, arg := range pinned {
		c, _ := api.ParseCid(arg)
		if err := s.waitPinned(ctx, c); err != nil {
			kuboError(w, http.StatusInternalServerError, fmt.Sprintf("pin %s: %v", c, err))
			return
		}
	}
	writeJSON(w, map[string]any{"Pins": pinned})
}

// waitPinned waits until a peer holds c, whatever errors others report
// meanwhile (they are retried), as the Go client's cluster-ctl --wait does.
func (s *Server) waitPinned(ctx context.Context, c api.Cid) error {
	status := func(ctx context.Context, c api.Cid) (api.GlobalPinInfo, error) {
		return s.backend.Status(ctx, c, false)
	}
	if err := client.Wait(ctx, status, api.Pin{Cid: c}, api.StatusPinned, 1, false); err != nil {
		return fmt.Errorf("not pinned by any cluster peer yet: %w", err)
	}
	return nil
}

func (s *Server) pinRm(w http.ResponseWriter, r *http.Request) {
	a, err := ParseArgs(r.URL.Query(), 1, -1)
	if err != nil {
		kuboError(w, http.StatusBadRequest, err.Error())
		return
	}
	var removed []string
	for _, arg := range a.Args {
		c, err := s.resolve(r.Context(), arg)
		if err == nil {
			_, err = s.backend.Unpin(r.Context(), c)
		}
		if errors.Is(err, api.ErrNotFound) {
			kuboError(w, http.StatusInternalServerError, fmt.Sprintf("%s: not pinned or pinned indirectly", arg))
			return
		}
		if err != nil {
			kuboError(w, http.StatusInternalServerError, err.Error())
			return
		}
		removed = append(removed, c.String())
	}
	writeJSON(w, map[string]any{"Pins": removed})
}

// pinType is how kubo would show a cluster pin.
func pinType(p api.Pin) string {
	if p.Mode == api.PinModeDirect {
		return string(api.IPFSPinDirect)
	}
	return string(api.IPFSPinRecursive)
}

// pinLs lists the cluster's pinset, as kubo's pin/ls: streamed lines with
// stream=true, else one {"Keys": {...}} object; with args, only those
// (an argument not in the pinset is an error, as in kubo).
func (s *Server) pinLs(w http.ResponseWriter, r *http.Request) {
	a, err := ParseArgs(r.URL.Query(), 0, -1)
	if err != nil {
		kuboError(w, http.StatusBadRequest, err.Error())
		return
	}
	stream, err := a.Bool("stream", false)
	if err != nil {
		kuboError(w, http.StatusBadRequest, err.Error())
		return
	}
	typ := a.Opts.Get("type")
	if typ == "" {
		typ = "all"
	}
	if typ != "all" && typ != "recursive" && typ != "direct" && typ != "indirect" {
		kuboError(w, http.StatusBadRequest, fmt.Sprintf("invalid type %q, must be one of {direct, indirect, recursive, all}", typ))
		return
	}
	keep := func(p api.Pin) bool { return typ == "all" || typ == pinType(p) }
	type entry struct{ Cid, Type string }
	if len(a.Args) > 0 {
		keys := map[string]map[string]string{}
		var list []entry
		for _, arg := range a.Args {
			c, err := s.resolve(r.Context(), arg)
			var p api.Pin
			if err == nil {
				p, err = s.backend.PinGet(r.Context(), c)
			}
			if err != nil || !keep(p) {
				kuboError(w, http.StatusInternalServerError, fmt.Sprintf("path '%s' is not pinned", arg))
				return
			}
			keys[p.Cid.String()] = map[string]string{"Type": pinType(p)}
			list = append(list, entry{p.Cid.String(), pinType(p)})
		}
		if stream {
			for _, e := range list {
				writeJSON(w, e)
			}
			return
		}
		writeJSON(w, map[string]any{"Keys": keys})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if stream {
		bw := bufio.NewWriter(w)
		enc := json.NewEncoder(bw)
		err = s.backend.Pins(r.Context(), func(p api.Pin) error {
			if keep(p) {
				return enc.Encode(entry{p.Cid.String(), pinType(p)})
			}
			return nil
		})
		bw.Flush()
	} else {
		keys := map[string]map[string]string{}
		err = s.backend.Pins(r.Context(), func(p api.Pin) error {
			if keep(p) {
				keys[p.Cid.String()] = map[string]string{"Type": pinType(p)}
			}
			return nil
		})
		json.NewEncoder(w).Encode(map[string]any{"Keys": keys})
	}
	if err != nil {
		logger.Warnf("pin/ls: %s", err)
	}
}

// pinUpdate pins to (inheriting from's options) and, unless unpin=false,
// removes from.
func (s *Server) pinUpdate(w http.ResponseWriter, r *http.Request) {
	a, err := ParseArgs(r.URL.Query(), 2, 2)
	if err != nil {
		kuboError(w, http.StatusBadRequest, err.Error())
		return
	}
	unpin, err := a.Bool("unpin", true)
	if err != nil {
		kuboError(w, http.StatusBadRequest, err.Error())
		return
	}
	from, err := s.resolve(r.Context(), a.Args[0])
	if err != nil {
		kuboError(w, http.StatusInternalServerError, err.Error())
		return
	}
	to, err := s.resolve(r.Context(), a.Args[1])
	if err != nil {
		kuboError(w, http.StatusInternalServerError, err.Error())
		return
	}
	next := api.Pin{Cid: to, Type: api.DataType, MaxDepth: -1, PinOptions: api.PinOptions{PinUpdate: from}}
	if unpin {
		_, err = s.backend.Replace(r.Context(), from, next)
	} else {
		_, err = s.backend.Pin(r.Context(), next)
	}
	if err != nil {
		kuboError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, map[string]any{"Pins": []string{from.String(), to.String()}})
}

// add forwards to kubo (which stores the blocks) with pin=false, streams
// kubo's answer back, and then pins the root cluster-wide unless the
// client asked for pin=false.
func (s *Server) add(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pin := true
	if v := q.Get("pin"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			kuboError(w, http.StatusBadRequest, fmt.Sprintf("option %q: %q is not a boolean", "pin", v))
			return
		}
		pin = b
	}
	q.Set("pin", "false")
	r.URL.RawQuery = q.Encode()
	// The root's line is held back until the root is pinned cluster-wide:
	// a client that reads it may count on the pin.
	rec := &rootRecorder{ResponseWriter: w, hold: pin}
	s.kubo.ServeHTTP(rec, r)
	if !pin || rec.root == "" || rec.failed {
		rec.release()
		return
	}
	c, err := api.ParseCid(rec.root)
	if err == nil {
		_, err = s.backend.Pin(r.Context(), api.Pin{Cid: c, Type: api.DataType, MaxDepth: -1})
	}
	if err != nil {
		// kubo announced the X-Stream-Error trailer; its CLI reports it.
		logger.Errorf("add: pinning %s cluster-wide: %s", rec.root, err)
		w.Header().Set("X-Stream-Error", fmt.Sprintf("added %s to kubo, but pinning it cluster-wide failed: %v", rec.root, err))
		return
	}
	rec.release()
}

// rootRecorder passes kubo's add answer through and remembers the last
// "Hash" it saw: the root. With hold, the last complete line is kept back
// until release.
type rootRecorder struct {
	http.ResponseWriter
	hold   bool
	buf    []byte // what has not been passed on
	root   string
	failed bool
}

func (r *rootRecorder) WriteHeader(code int) {
	r.failed = code != http.StatusOK
	r.ResponseWriter.WriteHeader(code)
}

func (r *rootRecorder) Write(b []byte) (int, error) {
	r.buf = append(r.buf, b...)
	// Pass on every complete line but the last (all of it without hold).
	last := -1 // where the last complete line starts
	for i := 0; i < len(r.buf); {
		j := bytes.IndexByte(r.buf[i:], '\n')
		if j < 0 {
			break
		}
		var line struct{ Hash string }
		if json.Unmarshal(r.buf[i:i+j], &line) == nil && line.Hash != "" {
			r.root = line.Hash
		}
		last = i
		i += j + 1
	}
	cut := len(r.buf)
	if r.hold {
		cut = max(last, 0)
	}
	if cut > 0 {
		if _, err := r.ResponseWriter.Write(r.buf[:cut]); err != nil {
			return 0, err
		}
		r.buf = append(r.buf[:0], r.buf[cut:]...)
	}
	return len(b), nil
}

// release passes on what was held back.
func (r *rootRecorder) release() {
	if len(r.buf) > 0 {
		r.ResponseWriter.Write(r.buf)
		r.buf = nil
	}
	r.Flush()
}

func (r *rootRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// repoStat sums the cluster: every live peer's repo size and StorageMax.
func (s *Server) repoStat(w http.ResponseWriter, r *http.Request) {
	var size, max uint64
	for _, st := range s.backend.RepoStats(r.Context()) {
		size += st.RepoSize
		max += st.StorageMax
	}
	writeJSON(w, map[string]any{"RepoSize": size, "StorageMax": max, "NumObjects": 0, "RepoPath": "pinring-cluster", "Version": "fs-repo@pinring"})
}

var _ io.Writer = (*rootRecorder)(nil)
