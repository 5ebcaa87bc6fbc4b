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

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	badger "github.com/ipfs/go-ds-badger2"
	crdt "github.com/ipfs/go-ds-crdt"

	"github.com/pinring/pinring/api"
)

// ErrPeerRunning is returned when the state of a running peer is opened.
var ErrPeerRunning = errors.New("the peer is running")

// Offline is the pinset of a stopped peer, opened without network: for
// export, import and digest. Imported pins are written (and signed, when
// announced at the next start) by the peer's write key.
type Offline struct {
	store  *badger.Datastore
	state  *State
	writer string
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
// the peer's write key ("": it holds none, and Import refuses).
func OpenOffline(ctx context.Context, cfg Config, path, cluster, writer string, create bool) (*Offline, error) {
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
	bs := blockstore.NewBlockstore(namespace.Wrap(store, ds.NewKey(ns+"/blocks")))
	dag := merkledag.NewDAGService(blockservice.New(bs, nil))
	scfg := cfg
	scfg.RebroadcastInterval = scfg.RebroadcastInterval * 1000 // nobody listens
	st, err := New(ctx, scfg, Deps{Store: store, Namespace: ns + "/state", JournalDir: JournalDir(path, ns+"/state"), DAG: dag,
		Broadcaster: quiet{done: make(chan struct{})}})
	if err != nil {
		store.Close()
		return nil, err
	}
	return &Offline{store: store, state: st, writer: writer}, nil
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
