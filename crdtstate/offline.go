package crdtstate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	badger "github.com/ipfs/go-ds-badger2"
	crdt "github.com/ipfs/go-ds-crdt"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// ErrPeerRunning is returned when the state of a running peer is opened.
var ErrPeerRunning = errors.New("the peer is running")

// Offline is the pinset of a stopped peer, opened without network: for
// export, import and digest. Imported pins are written (and signed, when
// announced at the next start) by the peer's write key.
type Offline struct {
	cfg     Config
	path    string
	ns      string // the cluster's namespace
	store   *badger.Datastore
	dag     crdt.SessionDAGService
	state   *State
	current CurrentEpoch
	writer  string
	origin  peer.ID
}

// quiet is a broadcaster that announces nothing: the heads of what an
// offline import writes go out when the peer next starts.
type quiet struct{ done chan struct{} }

func (q quiet) Broadcast(context.Context, []byte) error { return nil }
func (q quiet) Next(ctx context.Context) ([]byte, error) {
	select {
	case <-ctx.Done():
	case <-q.done:
	}
	return nil, crdt.ErrNoMoreBroadcast
}

// OpenOffline opens the pinset of cluster in the stopped peer's datastore
// at path (creating an empty one with create). writer is the public key of
// the peer's write key ("": it holds none, and Import refuses), origin the
// peer's ID, that what it imports is stamped with.
func OpenOffline(ctx context.Context, cfg Config, path, cluster, writer string, origin peer.ID, create bool) (*Offline, error) {
	if _, err := os.Stat(path); err != nil && !create {
		return nil, fmt.Errorf("no pinset in %s: %w", path, err)
	}
	store, err := OpenBadger(path)
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("%w (%s is locked): stop it first, or read a running peer with 'cluster-ctl pin ls --json'", ErrPeerRunning, path)
		}
		return nil, err
	}
	ns := "/pinring/" + cluster
	bs := blockstore.NewBlockstore(namespace.Wrap(Patient(store), ds.NewKey(ns+"/blocks"))) // no empty Badger batches (patient.go)
	o := &Offline{cfg: cfg, path: path, ns: ns, store: store, writer: writer, origin: origin,
		dag: merkledag.NewDAGService(blockservice.New(bs, nil))}
	if o.current, err = LoadCurrentEpoch(ctx, store, ns); err != nil {
		store.Close()
		return nil, err
	}
	if o.state, err = o.open(ctx, o.current.N()); err != nil {
		store.Close()
		return nil, err
	}
	return o, nil
}

// open opens epoch e of the pinset, announcing nothing.
func (o *Offline) open(ctx context.Context, e uint64) (*State, error) {
	scfg := o.cfg
	scfg.RebroadcastInterval = scfg.RebroadcastInterval * 1000 // nobody listens
	ns := StateNamespace(o.ns, e)
	return New(ctx, scfg, Deps{Store: o.store, Namespace: ns, JournalDir: JournalDir(o.path, ns), DAG: o.dag,
		BlocksNamespace: o.ns + "/blocks", Broadcaster: quiet{done: make(chan struct{})}, Origin: o.origin, Epoch: e})
}

// Epoch is the current epoch's record (zero for epoch 0).
func (o *Offline) Epoch() CurrentEpoch { return o.current }

// Compact starts a new epoch (ADR 9) on the stopped peer: the live pinset
// copied into epoch e+1, the record sealed by seal (the peer's write key)
// and saved as current, epoch e dropped. The peer announces the record at
// its next start, and the others switch to the new epoch.
func (o *Offline) Compact(ctx context.Context, self peer.ID, seal func([]byte) []byte, now time.Time) (api.Epoch, CopyStats, error) {
	if o.writer == "" || seal == nil {
		return api.Epoch{}, CopyStats{}, errors.New("this peer holds no write key: only a writer may start a new epoch ('cluster-peer keys import-write-key')")
	}
	old, e := o.state, o.current.N()
	next, err := o.open(ctx, e+1)
	if err != nil {
		return api.Epoch{}, CopyStats{}, err
	}
	cur, st, err := StartEpoch(ctx, old, next, o.current.Record, e+1, self, now, seal)
	rec := cur.Record
	if err == nil {
		err = SaveCurrentEpoch(ctx, o.store, o.ns, cur)
	}
	if err != nil {
		next.Close()
		return rec, st, err
	}
	o.state, o.current = next, cur
	oldNS := StateNamespace(o.ns, e)
	if err := old.Close(); err != nil {
		return rec, st, err
	}
	return rec, st, DropEpoch(ctx, o.store, oldNS, o.ns+"/blocks", StateNamespace(o.ns, e+1), JournalDir(o.path, oldNS))
}

// Close writes everything and closes the pinset.
func (o *Offline) Close() error {
	return errors.Join(o.state.Close(), o.store.Close())
}

// Digest is the pinset's digest.
func (o *Offline) Digest(ctx context.Context) (api.StateDigest, error) {
	return o.state.Digest(ctx)
}

// Export writes every pin as one JSON object a line, streaming; progress is
// called every 10,000 pins.
func (o *Offline) Export(ctx context.Context, w io.Writer, progress func(int)) (int, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw)
	n := 0
	err := o.state.Each(ctx, func(p api.Pin) error {
		if err := enc.Encode(p); err != nil {
			return err
		}
		n++
		if progress != nil && n%10000 == 0 {
			progress(n)
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// Import adds every pin of a JSON-lines export, written by this peer's
// write key; a bad line stops the import with its line number (the pins
// before it are kept).
func (o *Offline) Import(ctx context.Context, r io.Reader, progress func(int)) (int, error) {
	if o.writer == "" {
		return 0, errors.New("this peer holds no write key: imported pins must be signed by one ('cluster-peer keys import-write-key')")
	}
	dec := json.NewDecoder(bufio.NewReaderSize(r, 256<<10))
	n := 0
	for {
		var p api.Pin
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("pin %d of the import: %w", n+1, err)
		}
		if err := p.Validate(); err != nil {
			return n, fmt.Errorf("pin %d of the import (%s): %w", n+1, p.Cid, err)
		}
		p.Writer = o.writer
		if err := o.state.Add(ctx, &p); err != nil {
			return n, err
		}
		n++
		if progress != nil && n%10000 == 0 {
			progress(n)
		}
	}
	return n, o.state.Flush(ctx)
}
