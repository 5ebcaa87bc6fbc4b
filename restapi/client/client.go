// Package client is the Go client of Pinring's REST API (and so of IPFS
// Cluster's). cluster-ctl uses it.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
)

// DefaultHost is where a local peer's API listens.
const DefaultHost = "/ip4/127.0.0.1/tcp/9094"

// Client calls one peer's REST API.
type Client struct {
	bases []string // --host a,b,…: tried in turn while one cannot be reached
	mu    sync.Mutex
	cur   int // the one that answered last
	http  *http.Client
	opts  Options
}

// base is the peer URL that answered last.
func (c *Client) base() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bases[c.cur]
}

// send makes a request to the peer that answered last and, while a peer
// cannot be connected to at all (the request never left), to the next one
// given (--host a,b,…).
func (c *Client) send(ctx context.Context, hc *http.Client, build func(base string) (*http.Request, error)) (*http.Response, error) {
	c.mu.Lock()
	start := c.cur
	c.mu.Unlock()
	var errs []error
	for i := range c.bases {
		k := (start + i) % len(c.bases)
		req, err := build(c.bases[k])
		if err != nil {
			return nil, err
		}
		c.authorize(req)
		resp, err := hc.Do(req)
		if err == nil {
			c.mu.Lock()
			c.cur = k
			c.mu.Unlock()
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("cannot reach the peer at %s: %w", c.bases[k], err))
		var op *net.OpError
		if ctx.Err() != nil || !errors.As(err, &op) || op.Op != "dial" {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// Options are a client's credentials and TLS settings.
type Options struct {
	// BasicAuth is "user:password".
	BasicAuth string
	// Token is a bearer token (from 'cluster-ctl token new').
	Token string
	// HTTPS uses https:// for a host given without a scheme.
	HTTPS bool
	// InsecureTLS skips certificate verification (self-signed test certs).
	InsecureTLS bool
	// RootCAs verifies the server's certificate (nil: the system's).
	RootCAs *x509.CertPool
}

// NewWithOptions is New with credentials and TLS settings.
func NewWithOptions(host string, timeout time.Duration, o Options) (*Client, error) {
	if o.HTTPS && !strings.Contains(host, "://") {
		hp, err := config.ParseListen(host)
		if err != nil {
			return nil, fmt.Errorf("--host %q: %v", host, err)
		}
		host = "https://" + hp
	}
	c, err := New(host, timeout)
	if err != nil {
		return nil, err
	}
	if o.BasicAuth != "" && !strings.Contains(o.BasicAuth, ":") {
		return nil, fmt.Errorf("--basic-auth: want user:password")
	}
	c.opts = o
	tr := c.http.Transport.(*http.Transport)
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: o.InsecureTLS, RootCAs: o.RootCAs}
	return c, nil
}

// untimed is the client's HTTP client without its timeout, for calls
// that bound their time otherwise (uploads, streams).
func (c *Client) untimed() *http.Client {
	hc := *c.http
	hc.Timeout = 0
	return &hc
}

func (c *Client) authorize(req *http.Request) {
	switch {
	case c.opts.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	case c.opts.BasicAuth != "":
		user, pass, _ := strings.Cut(c.opts.BasicAuth, ":")
		req.SetBasicAuth(user, pass)
	}
}

// New makes a client for host: a multiaddr, host:port or an http(s) URL,
// or several of them comma-separated (the next is tried while one cannot
// be reached). timeout bounds each call (0: none).
func New(host string, timeout time.Duration) (*Client, error) {
	var bases []string
	for h := range strings.SplitSeq(host, ",") {
		h = strings.TrimSpace(h)
		base := h
		if !strings.HasPrefix(h, "http://") && !strings.HasPrefix(h, "https://") {
			hp, err := config.ParseListen(h)
			if err != nil {
				return nil, fmt.Errorf("--host %q: %v", h, err)
			}
			base = "http://" + hp
		}
		if _, err := url.Parse(base); err != nil {
			return nil, fmt.Errorf("--host %q: %v", h, err)
		}
		bases = append(bases, strings.TrimRight(base, "/"))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &Client{bases: bases, http: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	return c.doWith(ctx, c.http, method, path, q)
}

func (c *Client) doWith(ctx context.Context, hc *http.Client, method, path string, q url.Values) (*http.Response, error) {
	resp, err := c.send(ctx, hc, func(base string) (*http.Request, error) {
		u := base + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		return http.NewRequestWithContext(ctx, method, u, nil)
	})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e = api.Error{Code: resp.StatusCode, Message: strings.TrimSpace(string(b))}
		}
		return nil, e
	}
	return resp, nil
}

func (c *Client) one(ctx context.Context, method, path string, q url.Values, out any) error {
	resp, err := c.do(ctx, method, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("bad answer from %s %s: %w", method, path, err)
	}
	return nil
}

// errStalled is why a stream was cut: the peer sent nothing for the
// client's timeout.
var errStalled = errors.New("the peer sent nothing for the client's timeout")

// streamInto decodes a stream of JSON objects and calls fn for each. The
// client's timeout bounds the wait for the answer and for each next
// object, not the whole stream: listing a pinset of a million pins takes
// as long as it takes while objects keep coming.
func streamInto[T any](c *Client, ctx context.Context, method, path string, q url.Values, fn func(T) error) error {
	idle := c.http.Timeout
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var watchdog *time.Timer
	if idle > 0 {
		watchdog = time.AfterFunc(idle, func() { cancel(errStalled) })
		defer watchdog.Stop()
	}
	resp, err := c.doWith(ctx, c.untimed(), method, path, q)
	if err != nil {
		if context.Cause(ctx) == errStalled {
			return fmt.Errorf("%s %s: %w (%s)", method, path, errStalled, idle)
		}
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var item T
		err := dec.Decode(&item)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if context.Cause(ctx) == errStalled {
				err = fmt.Errorf("%w (%s)", errStalled, idle)
			}
			return fmt.Errorf("bad stream from %s: %w", path, err)
		}
		if watchdog != nil {
			watchdog.Stop() // the caller's own time is not the peer's silence
		}
		if err := fn(item); err != nil {
			return err
		}
		if watchdog != nil {
			watchdog.Reset(idle)
		}
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return errors.New(e)
	}
	return nil
}

// ID returns the peer's identity.
func (c *Client) ID(ctx context.Context) (api.ID, error) {
	var id api.ID
	return id, c.one(ctx, http.MethodGet, "/id", nil, &id)
}

// Version returns the peer's version.
func (c *Client) Version(ctx context.Context) (api.VersionInfo, error) {
	var v api.VersionInfo
	return v, c.one(ctx, http.MethodGet, "/version", nil, &v)
}

// Peers calls fn for every cluster peer.
func (c *Client) Peers(ctx context.Context, fn func(api.ID) error) error {
	return streamInto(c, ctx, http.MethodGet, "/peers", nil, fn)
}

// Pin adds c to the pinset.
func (c *Client) Pin(ctx context.Context, ci api.Cid, opts api.PinOptions) (api.Pin, error) {
	var p api.Pin
	return p, c.one(ctx, http.MethodPost, "/pins/"+ci.String(), api.PinOptionsQuery(opts), &p)
}

// PinPath adds an /ipfs/... path to the pinset.
func (c *Client) PinPath(ctx context.Context, path string, opts api.PinOptions) (api.Pin, error) {
	var p api.Pin
	return p, c.one(ctx, http.MethodPost, "/pins"+path, api.PinOptionsQuery(opts), &p)
}

// Unpin removes c from the pinset.
func (c *Client) Unpin(ctx context.Context, ci api.Cid) (api.Pin, error) {
	var p api.Pin
	return p, c.one(ctx, http.MethodDelete, "/pins/"+ci.String(), nil, &p)
}

// UnpinPath removes an /ipfs/... path's CID from the pinset.
func (c *Client) UnpinPath(ctx context.Context, path string) (api.Pin, error) {
	var p api.Pin
	return p, c.one(ctx, http.MethodDelete, "/pins"+path, nil, &p)
}

// Allocation returns one pin of the pinset.
func (c *Client) Allocation(ctx context.Context, ci api.Cid) (api.Pin, error) {
	var p api.Pin
	return p, c.one(ctx, http.MethodGet, "/allocations/"+ci.String(), nil, &p)
}

// Allocations calls fn for every pin of the pinset of the given types
// (comma list; "" or "all" for every type).
func (c *Client) Allocations(ctx context.Context, filter string, fn func(api.Pin) error) error {
	q := url.Values{}
	if filter != "" {
		q.Set("filter", filter)
	}
	return streamInto(c, ctx, http.MethodGet, "/allocations", q, fn)
}

// Status returns the status of one pin.
func (c *Client) Status(ctx context.Context, ci api.Cid, local bool) (api.GlobalPinInfo, error) {
	var g api.GlobalPinInfo
	return g, c.one(ctx, http.MethodGet, "/pins/"+ci.String(), localQ(local), &g)
}

// StatusAll calls fn for the status of every pin passing filter.
func (c *Client) StatusAll(ctx context.Context, filter string, local bool, fn func(api.GlobalPinInfo) error) error {
	q := localQ(local)
	if filter != "" {
		q.Set("filter", filter)
	}
	return streamInto(c, ctx, http.MethodGet, "/pins", q, fn)
}

// Recover retries a pin's failed operations.
func (c *Client) Recover(ctx context.Context, ci api.Cid, local bool) (api.GlobalPinInfo, error) {
	var g api.GlobalPinInfo
	return g, c.one(ctx, http.MethodPost, "/pins/"+ci.String()+"/recover", localQ(local), &g)
}

// RecoverAll retries every failed operation.
func (c *Client) RecoverAll(ctx context.Context, local bool, fn func(api.GlobalPinInfo) error) error {
	return streamInto(c, ctx, http.MethodPost, "/pins/recover", localQ(local), fn)
}

// Digest returns the state digest.
func (c *Client) Digest(ctx context.Context) (api.StateDigest, error) {
	var d api.StateDigest
	return d, c.one(ctx, http.MethodGet, "/state/digest", nil, &d)
}

// MetricNames lists the metric names the cluster's peers publish.
func (c *Client) MetricNames(ctx context.Context) ([]string, error) {
	var names []string
	return names, c.one(ctx, http.MethodGet, "/monitor/metrics", nil, &names)
}

// Metrics returns the latest valid metric called name of every peer.
func (c *Client) Metrics(ctx context.Context, name string) ([]api.Metric, error) {
	var ms []api.Metric
	return ms, c.one(ctx, http.MethodGet, "/monitor/metrics/"+url.PathEscape(name), nil, &ms)
}

// Alerts returns the alerts the peer raised.
func (c *Client) Alerts(ctx context.Context) ([]api.Alert, error) {
	var as []api.Alert
	return as, c.one(ctx, http.MethodGet, "/health/alerts", nil, &as)
}

// Audit has the peer (a writer's) challenge the peers holding c to prove
// it (pid: only that one, when defined).
func (c *Client) Audit(ctx context.Context, ci api.Cid, pid peer.ID) ([]api.AuditResult, error) {
	var q url.Values
	if pid != "" {
		q = url.Values{"peer": {pid.String()}}
	}
	var rs []api.AuditResult
	return rs, c.one(ctx, http.MethodPost, "/audit/"+ci.String(), q, &rs)
}

// Admissions lists the writers' admission records.
func (c *Client) Admissions(ctx context.Context) ([]api.Admission, error) {
	var as []api.Admission
	return as, c.one(ctx, http.MethodGet, "/admissions", nil, &as)
}

// Admit has the peer (a writer's) admit pid: pins are allocated to it.
func (c *Client) Admit(ctx context.Context, pid peer.ID, note string) (api.Admission, error) {
	var a api.Admission
	return a, c.one(ctx, http.MethodPost, "/admissions/"+pid.String(), noteQuery(note), &a)
}

// Revoke has the peer (a writer's) revoke pid: it is allocated nothing
// and its pins move.
func (c *Client) Revoke(ctx context.Context, pid peer.ID, note string) (api.Admission, error) {
	var a api.Admission
	return a, c.one(ctx, http.MethodDelete, "/admissions/"+pid.String(), noteQuery(note), &a)
}

func noteQuery(note string) url.Values {
	if note == "" {
		return nil
	}
	return url.Values{"note": {note}}
}

// RepoGC runs kubo's garbage collection on the peer (local) or on every
// peer.
func (c *Client) RepoGC(ctx context.Context, local bool) (api.GlobalRepoGC, error) {
	var g api.GlobalRepoGC
	return g, c.one(ctx, http.MethodPost, "/ipfs/gc", localQ(local), &g)
}

// Bandwidth returns the peer's libp2p traffic by protocol.
func (c *Client) Bandwidth(ctx context.Context) (map[string]api.Bandwidth, error) {
	var b map[string]api.Bandwidth
	return b, c.one(ctx, http.MethodGet, "/health/bandwidth", nil, &b)
}

// Graph returns the cluster's connectivity graph.
func (c *Client) Graph(ctx context.Context) (api.Graph, error) {
	var g api.Graph
	return g, c.one(ctx, http.MethodGet, "/health/graph", nil, &g)
}

// TokenNew asks for a token (needs --basic-auth).
func (c *Client) TokenNew(ctx context.Context, ttl time.Duration, readOnly bool) (api.Token, error) {
	var t api.Token
	q := url.Values{"ttl": {ttl.String()}}
	if readOnly {
		q.Set("read_only", "true")
	}
	return t, c.one(ctx, http.MethodPost, "/token", q, &t)
}

// TokenRevoke revokes a token, given whole or by its ID.
func (c *Client) TokenRevoke(ctx context.Context, tokenOrID string) (string, error) {
	var r struct{ Revoked string }
	err := c.one(ctx, http.MethodDelete, "/token/"+url.PathEscape(tokenOrID), nil, &r)
	return r.Revoked, err
}

// PeerRm asks the peer to remove id from the cluster; a peer removes only
// itself (it announces its departure and stops).
func (c *Client) PeerRm(ctx context.Context, id peer.ID) error {
	return c.one(ctx, http.MethodDelete, "/peers/"+id.String(), nil, nil)
}

// Health returns the peer's report on itself; the error is nil when the
// peer answered, healthy or not (see Health.Healthy).
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	var h api.Health
	resp, err := c.send(ctx, c.http, func(base string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, base+"/health/report", nil)
	})
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return h, api.Error{Code: resp.StatusCode, Message: "unexpected answer from /health/report"}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return h, fmt.Errorf("reading GET /health/report: %w", err)
	}
	// A 503 is either the report of a peer whose kubo is down or, while
	// the peer starts, an error saying what it is doing.
	var e api.Error
	if resp.StatusCode == http.StatusServiceUnavailable && json.Unmarshal(b, &e) == nil && e.Code != 0 && e.Message != "" {
		return h, e
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("bad answer from GET /health/report: %w", err)
	}
	return h, nil
}

func localQ(local bool) url.Values {
	q := url.Values{}
	if local {
		q.Set("local", "true")
	}
	return q
}
