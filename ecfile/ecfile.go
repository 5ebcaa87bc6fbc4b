// Package ecfile stores a file as Reed-Solomon shards, each a UnixFS file
// pinned on its own peer, and reads it back from any K of them: the
// orchestration around adder's encoding (which peers, which pins, what a
// lost shard takes to rebuild). What it needs of the cluster is Cluster.
package ecfile

import (
	"context"
	"fmt"
	"io"
	"iter"
	"os"
	"path"
	"runtime"
	"slices"
	"time"

	ipld "github.com/ipfs/go-ipld-format"
	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sync/errgroup"

	"github.com/pinring/pinring/adder"
	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/countio"
)

var logger = logging.Logger("ecfile")

// Cluster is what erasure-coded files need of the peer.
type Cluster interface {
	// Self is this peer.
	Self() peer.ID
	// ShardPeers picks a peer for each of n shards, distinct where there
	// are enough peers, avoiding those in avoid while others remain.
	ShardPeers(n int, avoid []peer.ID) ([]peer.ID, error)
	// Sink stores blocks in this peer's kubo and pushes them to the peers
	// in to; Close it when done.
	Sink(to []peer.ID) Sink
	// Write writes a pin record, durably.
	Write(ctx context.Context, pin *api.Pin) error
	// PinGet reads a pin record (api.ErrNotFound when absent).
	PinGet(ctx context.Context, c api.Cid) (api.Pin, error)
	// Alive reports whether a peer's heartbeats are current.
	Alive(pid peer.ID) bool
	// Cat reads a UnixFS file from this peer's kubo; holder is the peer
	// it is allocated to, whose kubo this peer's should be connected to.
	Cat(ctx context.Context, c api.Cid, holder peer.ID) (io.ReadCloser, error)
}

// ShardIdle fails a shard read that gets no byte for this long (a kubo
// that cannot find the blocks waits for ever), so that a repair or a read
// ends with an error instead of hanging.
var ShardIdle = time.Minute

// Sink is where a shard's blocks go.
type Sink interface {
	adder.BlockSink
	Close()
}

// Files adds, reads and repairs erasure-coded files in a cluster.
type Files struct {
	c Cluster
	// SpoolDir is where uploads and rebuilt shards are spooled ("": the
	// system's temporary directory). A peer gives its own, emptied at
	// start, so that a crash leaves nothing behind for long.
	SpoolDir string
	// MinFree is the free space the spool's disk keeps: an add or a
	// repair that would go below it fails (api.ErrNoSpace).
	MinFree uint64
	// slots bound the adds and repairs spooling at once.
	slots chan struct{}
}

// spoolsAtOnce is how many adds and repairs may spool at once; more are
// refused (api.ErrTooMany).
const spoolsAtOnce = 2

// New works in c.
func New(c Cluster) *Files {
	return &Files{c: c, MinFree: 1 << 30, slots: make(chan struct{}, spoolsAtOnce)}
}

// spool takes a spooling slot and makes a directory to spool in; done
// removes it and frees the slot.
func (ec *Files) spool() (dir string, done func(), err error) {
	select {
	case ec.slots <- struct{}{}:
	default:
		return "", nil, fmt.Errorf("%w: %d erasure-coded adds or repairs are spooling on this peer; try again when one ends", api.ErrTooMany, spoolsAtOnce)
	}
	dir, err = os.MkdirTemp(ec.SpoolDir, "pinring-ec")
	if err != nil {
		<-ec.slots
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir); <-ec.slots }, nil
}

// guarded is w, failing with api.ErrNoSpace once dir's disk has less than
// MinFree left (checked every 64 MiB written).
func (ec *Files) guarded(w io.Writer, dir string) io.Writer {
	return &spaceGuard{w: w, dir: dir, min: ec.MinFree}
}

type spaceGuard struct {
	w       io.Writer
	dir     string
	min     uint64
	unmeted int64
}

func (g *spaceGuard) Write(b []byte) (int, error) {
	if g.unmeted += int64(len(b)); g.unmeted >= 64<<20 || g.unmeted == int64(len(b)) {
		g.unmeted = 0
		if free, ok := freeSpace(g.dir); ok && free < g.min {
			return 0, fmt.Errorf("%w: the spool directory %s has %d MiB free, and keeps at least %d MiB", api.ErrNoSpace, g.dir, free>>20, g.min>>20)
		}
	}
	return g.w.Write(b)
}

// Add stores the one file of an upload as K data and M parity shards
// (ap.DataShards, ap.ParityShards), each a UnixFS file pinned on its own
// peer, plus an ec-meta pin under the CID that `ipfs add` gives the whole
// file; with ap.Local the shards' blocks stay in this peer's kubo. The
// upload is spooled to a temporary file (shards are computed from it),
// never held in memory.
func (ec *Files) Add(ctx context.Context, files iter.Seq2[api.AddEntry, error], ap api.AddParams, params adder.Params, progress func(api.AddedOutput) error) (api.Cid, error) {
	k, m := ap.DataShards, ap.ParityShards
	if k < 1 || m < 1 || k+m > 256 {
		return api.Cid{}, fmt.Errorf("%w: %d data and %d parity shards: want at least 1 of each, 256 in all", api.ErrBadRequest, k, m)
	}
	tmpDir, done, err := ec.spool()
	if err != nil {
		return api.Cid{}, err
	}
	defer done()
	spool, err := os.Create(path.Join(tmpDir, "file"))
	if err != nil {
		return api.Cid{}, err
	}
	defer spool.Close()
	var name string
	var whole ipld.Node
	var counter *countio.Reader
	for e, err := range files {
		if err != nil {
			return api.Cid{}, err
		}
		if name != "" {
			return api.Cid{}, fmt.Errorf("%w: erasure coding takes one file per add", api.ErrBadRequest)
		}
		if e.Kind != api.EntryFile {
			return api.Cid{}, fmt.Errorf("%w: erasure coding takes one file per add, not a directory or a link", api.ErrBadRequest)
		}
		name = path.Base(e.Path)
		counter = &countio.Reader{R: io.TeeReader(e.Body, ec.guarded(spool, tmpDir))}
		// The whole file's CID, as `ipfs add` would give it (blocks discarded).
		if whole, err = adder.ImportFile(adder.NewSink(ctx, nil), counter, params); err != nil {
			return api.Cid{}, fmt.Errorf("adding %s: %w", name, err)
		}
	}
	if name == "" {
		return api.Cid{}, fmt.Errorf("%w: the upload holds no file", api.ErrBadRequest)
	}
	size := counter.Count.Load()
	// The shards take (K+M)/K of the file again.
	need := uint64(size) / uint64(k) * uint64(k+m)
	if free, ok := freeSpace(tmpDir); ok && free < need+ec.MinFree {
		return api.Cid{}, fmt.Errorf("%w: the shards of %s need %d MiB in %s, which has %d MiB free and keeps %d MiB", api.ErrNoSpace, name, need>>20, tmpDir, free>>20, ec.MinFree>>20)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return api.Cid{}, err
	}
	shards := make([]*os.File, k+m)
	for i := range shards {
		if shards[i], err = os.Create(path.Join(tmpDir, fmt.Sprintf("shard-%d", i))); err != nil {
			return api.Cid{}, err
		}
		defer shards[i].Close()
	}
	if err := adder.Encode(spool, size, k, m, shards); err != nil {
		return api.Cid{}, err
	}
	layout := adder.Layout{Original: whole.Cid().String(), Size: size, K: k, M: m,
		ShardSize: adder.ShardSizeFor(size, k), Params: params}
	// Each shard goes to its peer's kubo as it is made. Shards are imported
	// in parallel: hashing and the puts overlap.
	peers, err := ec.c.ShardPeers(len(shards), nil)
	if err != nil {
		return api.Cid{}, err
	}
	layout.Shards = make([]string, len(shards))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0) + 1)
	for i, f := range shards {
		g.Go(func() error {
			to := []peer.ID{peers[i]}
			if ap.Local {
				to = nil
			}
			fan := ec.c.Sink(to)
			defer fan.Close()
			sink := adder.NewSink(gctx, fan)
			node, err := adder.ImportFile(sink, f, params)
			if err != nil {
				return fmt.Errorf("adding shard %d: %w", i, err)
			}
			if err := sink.Flush(); err != nil {
				return fmt.Errorf("storing shard %d in kubo: %w", i, err)
			}
			layout.Shards[i] = node.Cid().String()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return api.Cid{}, err
	}
	for i, s := range layout.Shards {
		sc, _ := api.ParseCid(s)
		if err := progress(api.AddedOutput{Name: fmt.Sprintf("%s (shard %d of %d)", name, i+1, k+m), Cid: sc, Size: uint64(layout.ShardSize), Allocations: []peer.ID{peers[i]}}); err != nil {
			return api.Cid{}, err
		}
	}
	root := api.NewCid(whole.Cid())
	if err := ec.writeShards(ctx, root, name, layout, ap.PinOptions, peers); err != nil {
		return api.Cid{}, err
	}
	if err := progress(api.AddedOutput{Name: name, Cid: root, Size: uint64(size), Allocations: peers}); err != nil {
		return api.Cid{}, err
	}
	return root, nil
}

// writeShards records the shard pins (one replica each, on distinct peers)
// and the ec-meta pin.
func (ec *Files) writeShards(ctx context.Context, root api.Cid, name string, l adder.Layout, opts api.PinOptions, peers []peer.ID) error {
	for i, s := range l.Shards {
		c, _ := api.ParseCid(s)
		shard := api.Pin{Cid: c, Type: api.ShardType, MaxDepth: -1, Reference: root,
			PinOptions: api.PinOptions{Name: fmt.Sprintf("%s shard %d/%d", name, i+1, len(l.Shards)),
				ReplicationFactorMin: 1, ReplicationFactorMax: 1}}
		shard.Allocations = []peer.ID{peers[i]}
		if err := ec.c.Write(ctx, &shard); err != nil {
			return err
		}
	}
	meta := api.Pin{Cid: root, Type: api.MetaType, MaxDepth: -1, PinOptions: opts}
	if meta.Name == "" {
		meta.Name = name
	}
	meta.Metadata = l.Metadata()
	for k, v := range opts.Metadata {
		meta.Metadata[k] = v
	}
	meta.ReplicationFactorMin, meta.ReplicationFactorMax = -1, -1
	return ec.c.Write(ctx, &meta)
}

// Layout reads the ec-meta pin and the layout of the erasure-coded file c.
func (ec *Files) Layout(ctx context.Context, c api.Cid) (api.Pin, adder.Layout, error) {
	pin, err := ec.c.PinGet(ctx, c)
	if err != nil {
		return pin, adder.Layout{}, err
	}
	if pin.Type != api.MetaType {
		return pin, adder.Layout{}, fmt.Errorf("%w: %s is not an erasure-coded file", api.ErrBadRequest, c)
	}
	l, err := adder.LayoutFromMetadata(c.String(), pin.Metadata)
	if err != nil {
		return pin, l, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	return pin, l, nil
}

// holder is the peer shard s is allocated to, if it is this one or a live
// peer, as far as the pinset and the heartbeats tell.
func (ec *Files) holder(ctx context.Context, s string) (peer.ID, bool) {
	c, err := api.ParseCid(s)
	if err != nil {
		return "", false
	}
	pin, err := ec.c.PinGet(ctx, c)
	if err != nil || len(pin.Allocations) == 0 {
		return "", false
	}
	a := pin.Allocations[0]
	return a, a == ec.c.Self() || ec.c.Alive(a)
}

// cat opens shard s, held by holder, failing a read that waits ShardIdle
// for a byte.
func (ec *Files) cat(ctx context.Context, s string, holder peer.ID) (io.ReadCloser, error) {
	c, err := api.ParseCid(s)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stall := fmt.Errorf("shard %s: no data from its peer's kubo for %s", s, ShardIdle)
	idle := time.AfterFunc(ShardIdle, func() { cancel(stall) })
	rc, err := ec.c.Cat(ctx, c, holder)
	if err != nil {
		idle.Stop()
		cancel(nil)
		return nil, err
	}
	return &idleReader{rc: rc, ctx: ctx, idle: idle, cancel: cancel}, nil
}

// idleReader restarts its timer at every read that returns data; when the
// timer fires, the read's context is cancelled, which ends a blocked read.
type idleReader struct {
	rc     io.ReadCloser
	ctx    context.Context
	idle   *time.Timer
	cancel context.CancelCauseFunc
}

func (r *idleReader) Read(b []byte) (int, error) {
	n, err := r.rc.Read(b)
	if n > 0 {
		r.idle.Reset(ShardIdle)
	}
	if err != nil && err != io.EOF && context.Cause(r.ctx) != nil {
		err = context.Cause(r.ctx)
	}
	return n, err
}

func (r *idleReader) Close() error {
	r.idle.Stop()
	r.cancel(nil)
	return r.rc.Close()
}

// openShards opens readers for the shards that are available, at least k
// of them, preferring data shards; the rest are nil.
func (ec *Files) openShards(ctx context.Context, l adder.Layout, skip map[int]bool) ([]io.Reader, []io.Closer, error) {
	readers := make([]io.Reader, len(l.Shards))
	var closers []io.Closer
	open := 0
	for i, s := range l.Shards {
		if open == l.K {
			break
		}
		if skip[i] {
			continue
		}
		holder, ok := ec.holder(ctx, s)
		if !ok {
			continue
		}
		rc, err := ec.cat(ctx, s, holder)
		if err != nil {
			continue
		}
		readers[i] = rc
		closers = append(closers, rc)
		open++
	}
	if open < l.K {
		for _, c := range closers {
			c.Close()
		}
		return nil, nil, fmt.Errorf("only %d of %d shards of %s are on live peers; %d are needed", open, len(l.Shards), l.Original, l.K)
	}
	return readers, closers, nil
}

// Get writes the original file c to w from any K shards, reconstructing
// missing data shards when needed.
func (ec *Files) Get(ctx context.Context, c api.Cid, w io.Writer) error {
	_, l, err := ec.Layout(ctx, c)
	if err != nil {
		return err
	}
	readers, closers, err := ec.openShards(ctx, l, nil)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	missing := map[int]bool{}
	for i := range l.K {
		if readers[i] == nil {
			missing[i] = true
		}
	}
	if len(missing) > 0 {
		tmp, done, err := ec.spool()
		if err != nil {
			return err
		}
		defer done()
		files, cleanup, err := rebuildShards(tmp, l, readers, missing, func(w io.Writer) io.Writer { return ec.guarded(w, tmp) })
		defer cleanup()
		if err != nil {
			return fmt.Errorf("reconstructing %s: %w", c, err)
		}
		// The readers were consumed: open the data shards again, the
		// rebuilt ones from their files.
		for _, cl := range closers {
			cl.Close()
		}
		closers = nil
		for i := range l.K {
			if f, ok := files[i]; ok {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return err
				}
				readers[i] = f
				continue
			}
			holder, _ := ec.holder(ctx, l.Shards[i])
			rc, err := ec.cat(ctx, l.Shards[i], holder)
			if err != nil {
				return err
			}
			readers[i] = rc
			closers = append(closers, rc)
		}
	}
	return adder.Join(w, readers[:l.K], l.K, l.M, l.Size)
}

// RepairAll repairs each file whose ec-meta pin is in metas (Repair) and
// returns what was done for those that needed it.
func (ec *Files) RepairAll(ctx context.Context, metas []api.Pin, lost func(peer.ID) bool) []api.ECRepair {
	var out []api.ECRepair
	for _, meta := range metas {
		l, err := adder.LayoutFromMetadata(meta.Cid.String(), meta.Metadata)
		if err != nil {
			continue
		}
		if res := ec.Repair(ctx, meta.Cid, l, lost); len(res.Rebuilt) > 0 || res.Error != "" {
			out = append(out, res)
		}
	}
	return out
}

// Repair rebuilds the shards of file c whose peers lost says are gone,
// from the surviving shards, and allocates each to a live peer that holds
// no other shard of the file where one exists.
func (ec *Files) Repair(ctx context.Context, c api.Cid, l adder.Layout, lost func(peer.ID) bool) api.ECRepair {
	res := api.ECRepair{Cid: c}
	missing := map[int]bool{}
	var holders []peer.ID
	shardPins := make([]api.Pin, len(l.Shards))
	for i, s := range l.Shards {
		sc, err := api.ParseCid(s)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		pin, err := ec.c.PinGet(ctx, sc)
		if err != nil || len(pin.Allocations) == 0 || lost(pin.Allocations[0]) {
			missing[i] = true
			if err != nil {
				pin = api.Pin{Cid: sc, Type: api.ShardType, MaxDepth: -1, Reference: c,
					PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1}}
			}
		} else {
			holders = append(holders, pin.Allocations[0])
		}
		shardPins[i] = pin
	}
	if len(missing) == 0 {
		return res
	}
	logger.Infof("erasure repair of %s: rebuilding %d of its %d shards (their peers are gone)", c, len(missing), len(l.Shards))
	fail := func(err error) api.ECRepair { res.Error = err.Error(); return res }
	readers, closers, err := ec.openShards(ctx, l, missing)
	if err != nil {
		return fail(err)
	}
	defer func() {
		for _, cl := range closers {
			cl.Close()
		}
	}()
	tmp, done, err := ec.spool()
	if err != nil {
		return fail(err)
	}
	defer done()
	files, cleanup, err := rebuildShards(tmp, l, readers, missing, func(w io.Writer) io.Writer { return ec.guarded(w, tmp) })
	defer cleanup()
	if err != nil {
		return fail(err)
	}
	var idx []int
	for i := range missing {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	to, err := ec.c.ShardPeers(len(idx), holders)
	if err != nil {
		return fail(err)
	}
	for j, i := range idx {
		f := files[i]
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fail(err)
		}
		fan := ec.c.Sink([]peer.ID{to[j]})
		sink := adder.NewSink(ctx, fan)
		node, err := adder.ImportFile(sink, f, l.Params)
		if err == nil {
			err = sink.Flush()
		}
		fan.Close()
		if err != nil {
			return fail(err)
		}
		if node.Cid().String() != l.Shards[i] {
			return fail(fmt.Errorf("shard %d rebuilt as %s, not %s: the import parameters changed", i, node.Cid(), l.Shards[i]))
		}
	}
	for j, i := range idx {
		shard := shardPins[i]
		shard.Allocations = []peer.ID{to[j]}
		if err := ec.c.Write(ctx, &shard); err != nil {
			return fail(err)
		}
		res.Rebuilt = append(res.Rebuilt, i)
		res.To = append(res.To, to[j].String())
	}
	logger.Infof("erasure repair of %s: rebuilt shards %v onto %v", c, res.Rebuilt, res.To)
	return res
}

// rebuildShards reconstructs the missing shards of l from readers (at
// least K non-nil) into temporary files; cleanup removes them and must be
// called even on error.
func rebuildShards(tmp string, l adder.Layout, readers []io.Reader, missing map[int]bool, guard func(io.Writer) io.Writer) (map[int]*os.File, func(), error) {
	files := map[int]*os.File{}
	cleanup := func() {
		for _, f := range files {
			f.Close()
		}
	}
	fill := make([]io.Writer, len(l.Shards))
	for i := range missing {
		f, err := os.Create(path.Join(tmp, fmt.Sprint(i)))
		if err != nil {
			return nil, cleanup, err
		}
		files[i], fill[i] = f, guard(f)
	}
	return files, cleanup, adder.Reconstruct(l.K, l.M, readers, fill)
}
