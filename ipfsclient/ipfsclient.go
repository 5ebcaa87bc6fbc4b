// Package ipfsclient is the IPFS connector: a client of kubo's HTTP RPC API
// for the calls a cluster peer needs. It holds no cluster state. Every
// error kubo returns reaches the caller with kubo's own message.
package ipfsclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
)

// ErrPinTimeout is returned when a pin makes no progress for PinTimeout.
var ErrPinTimeout = errors.New("pin made no progress within the pin timeout")

// KuboError is an error answered by kubo itself.
type KuboError struct {
	Call    string
	Status  int
	Message string
}

func (e *KuboError) Error() string {
	return fmt.Sprintf("kubo %s: %s", e.Call, e.Message)
}

// Client talks to one kubo daemon.
type Client struct {
	cfg  Config
	base string
	http *http.Client
}

// New makes a client; it does not contact kubo.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hostport, _ := config.ParseListen(cfg.API)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.Proxy = nil // kubo is local: never go through a proxy
	return &Client{cfg: cfg, base: "http://" + hostport + "/api/v0/", http: &http.Client{Transport: tr}}, nil
}

// post calls a kubo command and returns the open response for 2xx, or a
// KuboError carrying kubo's message.
func (c *Client) post(ctx context.Context, cmd string, q url.Values, body io.Reader, ctype string) (*http.Response, error) {
	u := c.base + cmd
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubo %s: %w", cmd, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct{ Message string }
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		}
		return nil, &KuboError{Call: cmd, Status: resp.StatusCode, Message: e.Message}
	}
	return resp, nil
}

// call posts and decodes a single JSON answer into out (if non-nil).
func (c *Client) call(ctx context.Context, cmd string, q url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout.D())
	defer cancel()
	resp, err := c.post(ctx, cmd, q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("kubo %s: bad answer: %w", cmd, err)
	}
	return nil
}

func args(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Add(kv[i], kv[i+1])
	}
	return q
}

// ID returns kubo's peer ID and addresses.
func (c *Client) ID(ctx context.Context) (api.IPFSID, error) {
	var r struct {
		ID        string
		Addresses []string
	}
	if err := c.call(ctx, "id", nil, &r); err != nil {
		return api.IPFSID{Error: err.Error()}, err
	}
	pid, err := peer.Decode(r.ID)
	if err != nil {
		return api.IPFSID{Error: err.Error()}, fmt.Errorf("kubo id: bad peer ID %q: %w", r.ID, err)
	}
	id := api.IPFSID{ID: pid}
	for _, a := range r.Addresses {
		if m, err := ma.NewMultiaddr(a); err == nil {
			id.Addresses = append(id.Addresses, m)
		}
	}
	return id, nil
}

// Pin pins c in kubo (recursively or directly, by mode). progress, when not
// nil, is told how many blocks kubo has fetched so far. The pin is
// cancelled with ErrPinTimeout when kubo reports no progress for
// ipfs.pin_timeout.
func (c *Client) Pin(ctx context.Context, ci api.Cid, mode api.PinMode, progress func(blocks uint64)) error {
	return c.PinMany(ctx, []api.Cid{ci}, mode, progress)
}

// PinMany pins several CIDs in one kubo call (one arg each): for content
// kubo already has, this is much cheaper than one call per CID. It fails
// as a whole if any CID fails; kubo may have pinned some of them.
func (c *Client) PinMany(ctx context.Context, cids []api.Cid, mode api.PinMode, progress func(blocks uint64)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timeout := c.cfg.PinTimeout.D()
	watchdog := time.AfterFunc(timeout, func() { cancel(ErrPinTimeout) })
	defer watchdog.Stop()

	q := args("recursive", fmt.Sprint(mode == api.PinModeRecursive), "progress", "true")
	for _, ci := range cids {
		q.Add("arg", ci.String())
	}
	resp, err := c.post(ctx, "pin/add", q, nil, "")
	if err != nil {
		return pinErr(ctx, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Pins     []string
			Progress uint64
			Message  string
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			return pinErr(ctx, fmt.Errorf("kubo pin/add: %w", err))
		}
		watchdog.Reset(timeout)
		if msg.Message != "" {
			return &KuboError{Call: "pin/add", Status: 200, Message: msg.Message}
		}
		if progress != nil && msg.Progress > 0 {
			progress(msg.Progress)
		}
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return &KuboError{Call: "pin/add", Status: 200, Message: e}
	}
	return nil
}

func pinErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrPinTimeout) {
		return ErrPinTimeout
	}
	return err
}

// Unpin removes kubo's pin of c.
func (c *Client) Unpin(ctx context.Context, ci api.Cid) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.UnpinTimeout.D())
	defer cancel()
	resp, err := c.post(ctx, "pin/rm", args("arg", ci.String()), nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// PinUpdate pins to, reusing what from already has, and keeps from pinned.
func (c *Client) PinUpdate(ctx context.Context, from, to api.Cid) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.UnpinTimeout.D())
	defer cancel()
	q := args("arg", from.String(), "arg", to.String(), "unpin", "false")
	resp, err := c.post(ctx, "pin/update", q, nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// PinLs streams kubo's pins of the given type (recursive, direct,
// indirect or all) into out, then closes out.
func (c *Client) PinLs(ctx context.Context, typeFilter string, out chan<- api.IPFSPinInfo) error {
	defer close(out)
	if typeFilter == "" {
		typeFilter = "recursive"
	}
	resp, err := c.post(ctx, "pin/ls", args("stream", "true", "type", typeFilter), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Cid  string
			Type string
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("kubo pin/ls: bad line %q: %w", sc.Text(), err)
		}
		c, err := cid.Decode(line.Cid)
		if err != nil {
			return fmt.Errorf("kubo pin/ls: bad CID %q: %w", line.Cid, err)
		}
		select {
		case out <- api.IPFSPinInfo{Cid: api.NewCid(c), Type: api.IPFSPinStatus(line.Type)}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("kubo pin/ls: %w", err)
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return &KuboError{Call: "pin/ls", Status: 200, Message: e}
	}
	return nil
}

// PinLsCid tells how kubo has c pinned (IPFSPinUnpinned when it has not).
func (c *Client) PinLsCid(ctx context.Context, ci api.Cid) (api.IPFSPinStatus, error) {
	var r struct {
		Keys map[string]struct{ Type string }
	}
	err := c.call(ctx, "pin/ls", args("arg", ci.String(), "type", "all"), &r)
	var ke *KuboError
	if errors.As(err, &ke) {
		// kubo answers "not pinned" with an error and no Keys.
		return api.IPFSPinUnpinned, nil
	}
	if err != nil {
		return "", err
	}
	for k, v := range r.Keys {
		kc, err := cid.Decode(k)
		if err == nil && kc.Hash().HexString() == ci.Hash().HexString() {
			return api.IPFSPinStatus(v.Type), nil
		}
	}
	return api.IPFSPinUnpinned, nil
}

// RepoStat returns kubo's repository size and StorageMax.
func (c *Client) RepoStat(ctx context.Context) (api.IPFSRepoStat, error) {
	var r struct {
		RepoSize   uint64
		StorageMax uint64
	}
	err := c.call(ctx, "repo/stat", args("size-only", "true"), &r)
	return api.IPFSRepoStat{RepoSize: r.RepoSize, StorageMax: r.StorageMax}, err
}

// RepoGC runs kubo's garbage collection: every block no pin holds is
// removed, and removed (when not nil) is called with each. It returns when
// kubo has finished.
func (c *Client) RepoGC(ctx context.Context, removed func(api.Cid)) error {
	resp, err := c.post(ctx, "repo/gc", args("quiet", "true"), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// One JSON object per removed block; an error arrives as {"Error": …}.
	dec := json.NewDecoder(resp.Body)
	for {
		var r struct {
			Key struct {
				Cid string `json:"/"`
			}
			Error string
		}
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("kubo repo/gc: %w", err)
		}
		if r.Error != "" {
			return fmt.Errorf("kubo repo/gc: %s", r.Error)
		}
		if removed != nil && r.Key.Cid != "" {
			k, err := cid.Decode(r.Key.Cid)
			if err != nil {
				return fmt.Errorf("kubo repo/gc: removed %q: %w", r.Key.Cid, err)
			}
			removed(api.NewCid(k))
		}
	}
}

// BlockPutMany stores blocks in kubo (not pinned) in one request; all
// blocks share the codec and hash function.
func (c *Client) BlockPutMany(ctx context.Context, blocks [][]byte, codec, mhType string) error {
	if len(blocks) == 0 {
		return nil
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, b := range blocks {
			fw, err := mw.CreateFormFile("data", "block")
			if err == nil {
				_, err = fw.Write(b)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout.D())
	defer cancel()
	q := args("cid-codec", codec, "mhtype", mhType, "pin", "false", "allow-big-block", "true")
	resp, err := c.post(ctx, "block/put", q, pr, mw.FormDataContentType())
	if err != nil {
		pr.CloseWithError(err)
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	n := 0
	for {
		var r struct{ Key, Message string }
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("kubo block/put: bad answer: %w", err)
		}
		if r.Message != "" {
			return &KuboError{Call: "block/put", Status: 200, Message: r.Message}
		}
		n++
	}
	if n != len(blocks) {
		return fmt.Errorf("kubo block/put stored %d of %d blocks", n, len(blocks))
	}
	return nil
}

// Cat streams the content of a UnixFS file; the caller closes it.
func (c *Client) Cat(ctx context.Context, ci api.Cid) (io.ReadCloser, error) {
	resp, err := c.post(ctx, "cat", args("arg", ci.String()), nil, "")
	if err != nil {
		return nil, err
	}
	return &catBody{resp.Body, resp}, nil
}

// catBody reports a kubo error sent in the trailer after the data.
type catBody struct {
	io.ReadCloser
	resp *http.Response
}

func (b *catBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		if e := b.resp.Trailer.Get("X-Stream-Error"); e != "" {
			return n, &KuboError{Call: "cat", Status: 200, Message: e}
		}
	}
	return n, err
}

// BlockPut stores one block in kubo (not pinned) and returns its CID.
func (c *Client) BlockPut(ctx context.Context, data []byte, codec, mhType string) (api.Cid, error) {
	if codec == "" {
		codec = "raw"
	}
	if mhType == "" {
		mhType = "sha2-256"
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("data", "block")
	if err != nil {
		return api.Cid{}, err
	}
	fw.Write(data)
	mw.Close()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout.D())
	defer cancel()
	q := args("cid-codec", codec, "mhtype", mhType, "pin", "false", "allow-big-block", "true")
	resp, err := c.post(ctx, "block/put", q, &body, mw.FormDataContentType())
	if err != nil {
		return api.Cid{}, err
	}
	defer resp.Body.Close()
	var r struct{ Key string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return api.Cid{}, fmt.Errorf("kubo block/put: bad answer: %w", err)
	}
	return api.ParseCid(r.Key)
}

// BlockStat returns the size of a block kubo holds.
func (c *Client) BlockStat(ctx context.Context, ci api.Cid) (int, error) {
	var r struct {
		Key  string
		Size int
	}
	err := c.call(ctx, "block/stat", args("arg", ci.String()), &r)
	return r.Size, err
}

// SwarmConnect asks kubo to connect to the given multiaddrs.
func (c *Client) SwarmConnect(ctx context.Context, addrs ...ma.Multiaddr) error {
	q := url.Values{}
	for _, a := range addrs {
		q.Add("arg", a.String())
	}
	return c.call(ctx, "swarm/connect", q, nil)
}

// SwarmPeers lists the peers kubo is connected to.
func (c *Client) SwarmPeers(ctx context.Context) ([]peer.ID, error) {
	var r struct {
		Peers []struct{ Peer string }
	}
	if err := c.call(ctx, "swarm/peers", nil, &r); err != nil {
		return nil, err
	}
	out := make([]peer.ID, 0, len(r.Peers))
	for _, p := range r.Peers {
		id, err := peer.Decode(p.Peer)
		if err != nil {
			return nil, fmt.Errorf("kubo swarm/peers: peer %q: %w", p.Peer, err)
		}
		out = append(out, id)
	}
	return out, nil
}

// Resolve turns an /ipfs/, /ipns/ or /ipld/ path into the CID it names.
func (c *Client) Resolve(ctx context.Context, path string) (api.Cid, error) {
	var r struct{ Path string }
	if err := c.call(ctx, "resolve", args("arg", path, "recursive", "true"), &r); err != nil {
		return api.Cid{}, err
	}
	s := strings.TrimPrefix(r.Path, "/ipfs/")
	s, _, _ = strings.Cut(s, "/")
	return api.ParseCid(s)
}

// BlockGetLocal reads a block from kubo's own blockstore only (kubo's
// offline=true: a block it lacks is an error at once, never a network
// fetch), refusing one over max bytes.
func (c *Client) BlockGetLocal(ctx context.Context, ci cid.Cid, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout.D())
	defer cancel()
	resp, err := c.post(ctx, "block/get", args("arg", ci.String(), "offline", "true"), nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("kubo block/get %s: %w", ci, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("kubo block/get %s: over %d bytes", ci, max)
	}
	return b, nil
}
