// Package pinsvc serves the IPFS Pinning Service API (v1.0.0) on its own
// listener, so that kubo's `ipfs pin remote` (and any client of the spec)
// pins into the cluster unchanged.
//
// Request IDs are "<CID>-<token>": the token is random for pins created
// here (a new one each time a CID is pinned again) and "cluster" for pins
// created through the REST API. The CID part makes a lookup one read of
// the pinset; the token part makes the ID unique per request. Both, and the
// request's creation time, are kept in the pin's metadata under reserved
// keys that responses leave out.
package pinsvc

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	logging "github.com/ipfs/go-log/v2"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/httpserve"
)

var logger = logging.Logger("pinsvc")

// Reserved metadata keys.
const (
	metaRequestID = "pinsvc:requestid"
	metaCreated   = "pinsvc:created"
	clusterToken  = "cluster" // the token of pins not created through this API
)

// Statuses of the spec.
const (
	Queued  = "queued"
	Pinning = "pinning"
	Pinned  = "pinned"
	Failed  = "failed"
)

// Limits of the spec.
const (
	defaultLimit = 10
	maxLimit     = 1000
	maxDelegates = 20
	maxCids      = 10
	maxNameLen   = 255
	maxOrigins   = 20
	maxMetaKeys  = 64
)

// Backend is what the Pinning Service API needs of a peer
// (api.PinningBackend).
type Backend = api.PinningBackend

// Authorizer checks a request's credentials (api.Authorizer).
type Authorizer = api.Authorizer

// Config is the listener.
type Config struct {
	// Listen is a multiaddr or host:port; "" disables the API. Default "".
	Listen string `json:"listen"`
	// MaxBodyBytes is the largest request body accepted. Default 1 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{Listen: "", MaxBodyBytes: 1 << 20} }

// Validate checks the config without changing it.
func (c Config) Validate() error {
	if c.Listen != "" {
		if _, err := config.ParseListen(c.Listen); err != nil {
			return config.Errf("pinsvc.listen", c.Listen, "%v", err)
		}
	}
	if c.MaxBodyBytes < 1 {
		return config.Errf("pinsvc.max_body_bytes", c.MaxBodyBytes, "must be positive")
	}
	return nil
}

// Server is the running API.
type Server struct {
	*httpserve.Server
	cfg     Config
	backend Backend
	auth    Authorizer
	// starting says what the peer is doing until it is ready ("" once it
	// is); while it says something every endpoint answers 503.
	starting func() string
}

// WhileStarting has every endpoint answer 503 (reason
// SERVICE_UNAVAILABLE, Retry-After: 1) with what f says, for as long as
// f says something. Call it before Start.
func (s *Server) WhileStarting(f func() string) { s.starting = f }

// New listens on cfg.Listen. auth nil: any bearer token is accepted (the
// header is still required, as the spec says).
func New(cfg Config, b Backend, auth Authorizer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hp, err := config.ParseListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, backend: b, auth: auth}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	if s.Server, err = httpserve.Listen(hp, "pinning service API", srv); err != nil {
		return nil, fmt.Errorf("pinning service API on %s: %w", hp, err)
	}
	return s, nil
}

// Handler routes the spec's endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pins", s.list)
	mux.HandleFunc("POST /pins", s.add)
	mux.HandleFunc("GET /pins/{requestid}", s.get)
	mux.HandleFunc("POST /pins/{requestid}", s.replace)
	mux.HandleFunc("DELETE /pins/{requestid}", s.remove)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	// s.starting is read when a request comes (WhileStarting is called
	// after New).
	gated := httpserve.WhileStarting(func() string {
		if s.starting == nil {
			return ""
		}
		return s.starting()
	}, func(w http.ResponseWriter, msg string) {
		fail(w, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", msg)
	}, mux)
	write := func(r *http.Request) bool { return r.Method != http.MethodGet && r.Method != http.MethodHead }
	refuse := func(w http.ResponseWriter, code int, err error) {
		reason := "UNAUTHORIZED"
		if code == http.StatusForbidden {
			reason = "FORBIDDEN"
		}
		fail(w, code, reason, err.Error())
	}
	addr, _ := config.ParseListen(s.cfg.Listen)
	return httpserve.SameOrigin(httpserve.IsLoopback(addr), refuse, httpserve.Authenticate(s.authorize, write, refuse, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		gated.ServeHTTP(w, r)
	})))
}

// authorize is the configured Authorizer, or, with none (auth off, on
// loopback), any bearer token: kubo's client always sends one.
func (s *Server) authorize(r *http.Request, write bool) error {
	if s.auth != nil {
		return s.auth(r, write)
	}
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") || strings.TrimSpace(strings.TrimPrefix(h, "Bearer ")) == "" {
		return fmt.Errorf("%w: send an access token as 'Authorization: Bearer <token>'", api.ErrUnauthorized)
	}
	return nil
}

// failure is the spec's error body.
type failure struct {
	Error struct {
		Reason  string `json:"reason"`
		Details string `json:"details,omitempty"`
	} `json:"error"`
}

func fail(w http.ResponseWriter, code int, reason, details string) {
	var f failure
	f.Error.Reason, f.Error.Details = reason, details
	writeJSON(w, code, f)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		logger.Debugf("writing response: %s", err)
	}
}

// backendFail maps a backend error to the spec's errors.
func backendFail(w http.ResponseWriter, err error) {
	code := httpserve.StatusOf(err)
	reason := map[int]string{http.StatusNotFound: "NOT_FOUND", http.StatusBadRequest: "BAD_REQUEST",
		http.StatusUnauthorized: "UNAUTHORIZED", http.StatusForbidden: "FORBIDDEN",
		http.StatusServiceUnavailable: "SERVICE_UNAVAILABLE"}[code]
	if reason == "" {
		code, reason = http.StatusInternalServerError, "INTERNAL_SERVER_ERROR"
	}
	fail(w, code, reason, err.Error())
}

// Pin is the spec's Pin object.
type Pin struct {
	Cid     string            `json:"cid"`
	Name    string            `json:"name,omitempty"`
	Origins []string          `json:"origins,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
}

// PinStatus is the spec's PinStatus object.
type PinStatus struct {
	RequestID string            `json:"requestid"`
	Status    string            `json:"status"`
	Created   time.Time         `json:"created"`
	Pin       Pin               `json:"pin"`
	Delegates []string          `json:"delegates"`
	Info      map[string]string `json:"info,omitempty"`
}

// PinResults is the spec's list answer.
type PinResults struct {
	Count   int         `json:"count"`
	Results []PinStatus `json:"results"`
}

// DecodePin reads and checks a Pin object.
func DecodePin(r io.Reader) (Pin, api.Cid, []ma.Multiaddr, error) {
	var p Pin
	dec := json.NewDecoder(r)
	if err := dec.Decode(&p); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return p, api.Cid{}, nil, err
		}
		return p, api.Cid{}, nil, fmt.Errorf("the body is not a Pin object: %v", err)
	}
	if dec.More() {
		return p, api.Cid{}, nil, errors.New("the body has more than one JSON value")
	}
	c, err := api.ParseCid(p.Cid)
	if err != nil {
		return p, api.Cid{}, nil, err
	}
	if len(p.Name) > maxNameLen {
		return p, api.Cid{}, nil, fmt.Errorf("name is %d characters, at most %d", len(p.Name), maxNameLen)
	}
	if len(p.Origins) > maxOrigins {
		return p, api.Cid{}, nil, fmt.Errorf("%d origins, at most %d", len(p.Origins), maxOrigins)
	}
	var origins []ma.Multiaddr
	for _, o := range p.Origins {
		a, err := ma.NewMultiaddr(o)
		if err != nil {
			return p, api.Cid{}, nil, fmt.Errorf("origin %q is not a multiaddr: %v", o, err)
		}
		origins = append(origins, a)
	}
	if len(p.Meta) > maxMetaKeys {
		return p, api.Cid{}, nil, fmt.Errorf("%d meta keys, at most %d", len(p.Meta), maxMetaKeys)
	}
	for k := range p.Meta {
		if strings.HasPrefix(k, "pinsvc:") {
			return p, api.Cid{}, nil, fmt.Errorf("meta key %q: the prefix pinsvc: is reserved", k)
		}
	}
	return p, c, origins, nil
}

func newToken() string {
	b := make([]byte, 10)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// RequestID of a pin record.
func RequestID(p api.Pin) string {
	tok := p.Metadata[metaRequestID]
	if tok == "" {
		tok = clusterToken
	}
	return p.Cid.Key() + "-" + tok
}

// ParseRequestID splits a request ID into the CID and the token.
func ParseRequestID(id string) (api.Cid, string, error) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 || i == len(id)-1 {
		return api.Cid{}, "", fmt.Errorf("%q is not a request ID of this service", id)
	}
	c, err := api.ParseCid(id[:i])
	if err != nil {
		return api.Cid{}, "", fmt.Errorf("%q is not a request ID of this service", id)
	}
	return c, id[i+1:], nil
}

// created is when the request was made (the pin's time for pins made
// through the REST API).
func created(meta map[string]string, fallback time.Time) time.Time {
	if s := meta[metaCreated]; s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
	}
	return fallback
}

func userMeta(meta map[string]string) map[string]string {
	out := maps.Clone(meta)
	maps.DeleteFunc(out, func(k, _ string) bool { return strings.HasPrefix(k, "pinsvc:") })
	if len(out) == 0 {
		return nil
	}
	return out
}

// StatusOf maps the cluster status of a pin to the spec's: pinned once any
// allocated peer holds it; failed when none does and one reports an
// error; pinning while a peer is at it; queued otherwise.
func StatusOf(g api.GlobalPinInfo) string {
	var pinning, failed bool
	for _, pi := range g.PeerMap {
		switch {
		case pi.Status == api.StatusPinned:
			return Pinned
		case pi.Status == api.StatusPinning:
			pinning = true
		case pi.Status == api.StatusPinError || pi.Status == api.StatusError || pi.Status == api.StatusUnexpectedlyUnpinned:
			failed = true
		}
	}
	switch {
	case pinning:
		return Pinning
	case failed:
		return Failed
	}
	return Queued
}

// delegates are the /p2p addresses of the allocated peers' kubos (every
// peer's when the pin is everywhere), at most 20; this peer's kubo when
// none is known.
func (s *Server) delegates(ctx context.Context, g api.GlobalPinInfo) []string {
	var out []string
	add := func(addrs []ma.Multiaddr) {
		for _, a := range addrs {
			if len(out) == maxDelegates {
				return
			}
			if _, err := a.ValueForProtocol(ma.P_P2P); err == nil && !slices.Contains(out, a.String()) {
				out = append(out, a.String())
			}
		}
	}
	for _, pi := range g.PeerMap {
		if pi.Status != api.StatusRemote {
			add(pi.IPFSAddresses)
		}
	}
	if len(out) == 0 {
		add(s.backend.ID(ctx).IPFS.Addresses)
	}
	if out == nil {
		out = []string{}
	}
	return out
}

func (s *Server) statusOf(ctx context.Context, g api.GlobalPinInfo, p *api.Pin) PinStatus {
	ps := PinStatus{Status: StatusOf(g), Delegates: s.delegates(ctx, g)}
	if p != nil {
		ps.RequestID = RequestID(*p)
		ps.Created = created(p.Metadata, p.Timestamp)
		ps.Pin = Pin{Cid: p.Cid.String(), Name: p.Name, Meta: userMeta(p.Metadata)}
		for _, o := range p.Origins {
			ps.Pin.Origins = append(ps.Pin.Origins, o.String())
		}
	} else {
		ps.RequestID = RequestID(api.Pin{Cid: g.Cid, PinOptions: api.PinOptions{Metadata: g.Metadata}})
		ps.Created = created(g.Metadata, g.Created)
		ps.Pin = Pin{Cid: g.Cid.String(), Name: g.Name, Meta: userMeta(g.Metadata)}
		for _, o := range g.Origins {
			ps.Pin.Origins = append(ps.Pin.Origins, o.String())
		}
	}
	return ps
}

// create writes a pin for a request and connects to its origins.
// create pins p (replacing the pin of from when defined) and answers its
// status.
func (s *Server) create(ctx context.Context, p Pin, c api.Cid, origins []ma.Multiaddr, from api.Cid) (PinStatus, error) {
	meta := maps.Clone(p.Meta)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[metaRequestID] = newToken()
	meta[metaCreated] = time.Now().UTC().Format(time.RFC3339Nano)
	pin := api.Pin{Cid: c, Type: api.DataType, MaxDepth: -1, PinOptions: api.PinOptions{Name: p.Name, Metadata: meta, Origins: origins}}
	pinOrReplace := s.backend.Pin
	if from.Defined() {
		pinOrReplace = func(ctx context.Context, pin api.Pin) (api.Pin, error) { return s.backend.Replace(ctx, from, pin) }
	}
	stored, err := pinOrReplace(ctx, pin)
	if err != nil {
		return PinStatus{}, err
	}
	if len(origins) > 0 {
		go func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.backend.SwarmConnect(cctx, origins...); err != nil {
				logger.Debugf("connecting to the origins of %s: %s", c, err)
			}
		}()
	}
	g, err := s.backend.Status(ctx, c, false)
	if err != nil {
		g = api.GlobalPinInfo{Cid: c}
	}
	return s.statusOf(ctx, g, &stored), nil
}

func (s *Server) add(w http.ResponseWriter, r *http.Request) {
	p, c, origins, err := DecodePin(r.Body)
	if err != nil {
		bodyFail(w, err)
		return
	}
	ps, err := s.create(r.Context(), p, c, origins, api.Cid{})
	if err != nil {
		backendFail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, ps)
}

func bodyFail(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		fail(w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", fmt.Sprintf("the body is over %d bytes", mbe.Limit))
		return
	}
	fail(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
}

// lookup finds the pin of a request ID, or answers 404.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (api.Pin, bool) {
	id := r.PathValue("requestid")
	c, tok, err := ParseRequestID(id)
	if err != nil {
		fail(w, http.StatusNotFound, "NOT_FOUND", err.Error())
		return api.Pin{}, false
	}
	p, err := s.backend.PinGet(r.Context(), c)
	if err != nil || RequestID(p) != c.Key()+"-"+tok {
		fail(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no pin request %s", id))
		return api.Pin{}, false
	}
	return p, true
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	p, ok := s.lookup(w, r)
	if !ok {
		return
	}
	g, err := s.backend.Status(r.Context(), p.Cid, false)
	if err != nil {
		backendFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.statusOf(r.Context(), g, &p))
}

func (s *Server) replace(w http.ResponseWriter, r *http.Request) {
	old, ok := s.lookup(w, r)
	if !ok {
		return
	}
	p, c, origins, err := DecodePin(r.Body)
	if err != nil {
		bodyFail(w, err)
		return
	}
	ps, err := s.create(r.Context(), p, c, origins, old.Cid)
	if err != nil {
		backendFail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, ps)
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	p, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if _, err := s.backend.Unpin(r.Context(), p.Cid); err != nil {
		backendFail(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// Query is a parsed GET /pins query.
type Query struct {
	Cids          map[string]bool // CID keys; empty: any
	Name          string
	Match         string // exact, iexact, partial, ipartial
	Status        map[string]bool
	Before, After time.Time
	Limit         int
	Meta          map[string]string
}

// ParseQuery reads and checks the list filters.
func ParseQuery(q map[string][]string) (Query, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	out := Query{Limit: defaultLimit, Match: "exact", Status: map[string]bool{Pinned: true}}
	if s := get("cid"); s != "" {
		out.Cids = map[string]bool{}
		for _, part := range strings.Split(s, ",") {
			c, err := api.ParseCid(strings.TrimSpace(part))
			if err != nil {
				return out, fmt.Errorf("cid: %v", err)
			}
			out.Cids[c.Key()] = true
		}
		if len(out.Cids) > maxCids {
			return out, fmt.Errorf("cid: %d CIDs, at most %d", len(out.Cids), maxCids)
		}
	}
	out.Name = get("name")
	if len(out.Name) > maxNameLen {
		return out, fmt.Errorf("name: at most %d characters", maxNameLen)
	}
	if m := get("match"); m != "" {
		if !slices.Contains([]string{"exact", "iexact", "partial", "ipartial"}, m) {
			return out, fmt.Errorf("match %q: want exact, iexact, partial or ipartial", m)
		}
		out.Match = m
	}
	if s := get("status"); s != "" {
		out.Status = map[string]bool{}
		for _, part := range strings.Split(s, ",") {
			part = strings.TrimSpace(part)
			if !slices.Contains([]string{Queued, Pinning, Pinned, Failed}, part) {
				return out, fmt.Errorf("status %q: want queued, pinning, pinned or failed", part)
			}
			out.Status[part] = true
		}
	}
	for _, tf := range []struct {
		key string
		to  *time.Time
	}{{"before", &out.Before}, {"after", &out.After}} {
		if s := get(tf.key); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return out, fmt.Errorf("%s %q: want an RFC 3339 timestamp", tf.key, s)
			}
			*tf.to = t
		}
	}
	if s := get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return out, fmt.Errorf("limit %q: want 1 to %d", s, maxLimit)
		}
		out.Limit = n
	}
	if s := get("meta"); s != "" {
		if err := json.Unmarshal([]byte(s), &out.Meta); err != nil {
			return out, fmt.Errorf("meta: want a JSON object of strings: %v", err)
		}
	}
	return out, nil
}

// matches reports whether a pin passes every filter but status.
func (q Query) matches(c api.Cid, name string, meta map[string]string, at time.Time) bool {
	if len(q.Cids) > 0 && !q.Cids[c.Key()] {
		return false
	}
	if q.Name != "" {
		n, want := name, q.Name
		if strings.HasPrefix(q.Match, "i") {
			n, want = strings.ToLower(n), strings.ToLower(want)
		}
		if strings.HasSuffix(q.Match, "partial") {
			if !strings.Contains(n, want) {
				return false
			}
		} else if n != want {
			return false
		}
	}
	if !q.Before.IsZero() && !at.Before(q.Before) {
		return false
	}
	if !q.After.IsZero() && !at.After(q.After) {
		return false
	}
	for k, v := range q.Meta {
		if meta[k] != v {
			return false
		}
	}
	return true
}

// newest keeps the limit most recently created results (a min-heap on
// created).
type newest []PinStatus

func (h newest) Len() int           { return len(h) }
func (h newest) Less(i, j int) bool { return h[i].Created.Before(h[j].Created) }
func (h newest) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *newest) Push(x any)        { *h = append(*h, x.(PinStatus)) }
func (h *newest) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query())
	if err != nil {
		fail(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	ctx := r.Context()
	res := PinResults{}
	var top newest
	err = s.backend.StatusAll(ctx, nil, false, func(g api.GlobalPinInfo) error {
		at := created(g.Metadata, g.Created)
		if !q.matches(g.Cid, g.Name, userMeta(g.Metadata), at) {
			return nil
		}
		st := StatusOf(g)
		if !q.Status[st] {
			return nil
		}
		res.Count++
		ps := s.statusOf(ctx, g, nil)
		ps.Status = st
		if top.Len() < q.Limit {
			heap.Push(&top, ps)
		} else if top[0].Created.Before(ps.Created) {
			top[0] = ps
			heap.Fix(&top, 0)
		}
		return nil
	})
	if err != nil {
		backendFail(w, err)
		return
	}
	res.Results = []PinStatus(top)
	slices.SortFunc(res.Results, func(a, b PinStatus) int { return b.Created.Compare(a.Created) })
	if res.Results == nil {
		res.Results = []PinStatus{}
	}
	writeJSON(w, http.StatusOK, res)
}
