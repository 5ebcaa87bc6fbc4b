package peer

import (
	"context"
	"fmt"
	"io"
	"iter"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/adder"
	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/repair"
)

// Add implements restapi.Backend: it imports the entries of an upload
// stream into UnixFS DAGs whose blocks go to this peer's kubo (allocated
// peers fetch them from it), then pins the root cluster-wide — or, with
// erasure coding, stores K+M shards on distinct peers and records an
// ec-meta pin. Progress is reported per file.
func (p *Peer) Add(ctx context.Context, files iter.Seq2[api.AddEntry, error], ap api.AddParams, progress func(api.AddedOutput) error) (api.Cid, error) {
	if err := p.checkWrite(); err != nil {
		return api.Cid{}, err
	}
	params := adder.Params{Chunker: ap.Chunker, RawLeaves: ap.RawLeaves, CidVersion: ap.CidVersion, HashFun: ap.HashFun, Layout: ap.Layout}
	if err := params.Validate(); err != nil {
		return api.Cid{}, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	if ap.Erasure {
		if ap.Format == "car" {
			return api.Cid{}, fmt.Errorf("%w: a CAR file cannot be erasure coded (add the file it holds)", api.ErrBadRequest)
		}
		return p.addErasure(ctx, files, ap, params, progress)
	}
	if ap.Format == "car" && ap.Wrap {
		return api.Cid{}, fmt.Errorf("%w: a CAR file cannot be wrapped in a directory", api.ErrBadRequest)
	}
	// Allocate first, so that the blocks go to the allocated peers' kubos
	// while they are made (and to this peer's, which serves them too).
	pin := api.Pin{Type: api.DataType, MaxDepth: -1, PinOptions: ap.PinOptions}
	p.pinDefaults(&pin)
	var allocs []peer.ID
	if !ap.NoPin {
		var err error
		if allocs, err = p.allocate(&pin, nil); err != nil {
			return api.Cid{}, err
		}
	}
	fan := p.sinkFor(pushTo(ap, allocs))
	defer fan.close()
	sink := adder.NewSink(ctx, fan)
	var root api.Cid
	var rootName string
	var err error
	if ap.Format == "car" {
		root, rootName, err = importCAR(ctx, files, sink, allocs, progress)
	} else {
		root, rootName, err = importFiles(ctx, files, sink, params, ap.Wrap, allocs, progress)
	}
	if err != nil {
		return api.Cid{}, err
	}
	if ap.NoPin {
		return root, nil
	}
	pin.Cid = root
	if pin.Name == "" {
		pin.Name = rootName
	}
	if err := pin.Validate(); err != nil {
		return api.Cid{}, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	pin.Allocations = allocs
	if err := p.write(ctx, &pin); err != nil {
		return api.Cid{}, err
	}
	return root, nil
}

// importFiles imports the entries of an upload into UnixFS DAGs
// written to sink, reporting each file and each directory as ipfs add
// does, and returns the root: the one file, the one top-level directory, or
// the directory wrapping them all. Blocks are flushed before the root is
// reported, so that a client that reads it may fetch it.
func importFiles(ctx context.Context, entries iter.Seq2[api.AddEntry, error], sink *adder.Sink, params adder.Params, wrap bool, allocs []peer.ID, progress func(api.AddedOutput) error) (api.Cid, string, error) {
	dir := adder.NewDir(sink, params)
	// The last file's line waits for the next entry: it is the root of a
	// single-file add, reported once its blocks are stored.
	var last *api.AddedOutput
	files, dirs := 0, 0
	for e, err := range entries {
		if err != nil {
			return api.Cid{}, "", err
		}
		var node ipld.Node
		switch e.Kind {
		case api.EntryDir:
			if err := dir.AddDir(e.Path); err != nil {
				return api.Cid{}, "", fmt.Errorf("%w: %v", api.ErrBadRequest, err)
			}
			dirs++
			continue
		case api.EntrySymlink:
			target, rerr := io.ReadAll(io.LimitReader(e.Body, adder.MaxSymlinkTarget+1))
			if rerr != nil {
				return api.Cid{}, "", fmt.Errorf("%w: reading symlink %s: %v", api.ErrBadRequest, e.Path, rerr)
			}
			if node, err = adder.Symlink(sink, string(target), params); err != nil {
				return api.Cid{}, "", fmt.Errorf("%w: symlink %s: %v", api.ErrBadRequest, e.Path, err)
			}
		default:
			if node, err = adder.ImportFile(sink, e.Body, params); err != nil {
				return api.Cid{}, "", fmt.Errorf("adding %s: %w", e.Path, err)
			}
		}
		files++
		if err := dir.Add(e.Path, node); err != nil {
			return api.Cid{}, "", fmt.Errorf("%w: %v", api.ErrBadRequest, err)
		}
		if last != nil {
			if err := progress(*last); err != nil {
				return api.Cid{}, "", err
			}
		}
		o := added(e.Path, node, allocs)
		last = &o
	}
	if files+dirs == 0 {
		return api.Cid{}, "", fmt.Errorf("%w: the upload holds no file", api.ErrBadRequest)
	}
	var lines []api.AddedOutput
	var root api.Cid
	var rootName string
	if last != nil {
		lines = append(lines, *last)
		root, rootName = last.Cid, last.Name
	}
	if wrap || files > 1 || dirs > 0 || strings.Contains(last.Name, "/") {
		// A directory: its top-level entry is what `ipfs add -r` returns,
		// or the directory wrapping them all when asked for or when there
		// are several. Directories are reported after the files, children
		// first, so that the root comes last.
		top, err := dir.Finish(ctx, func(rel string, n ipld.Node) error {
			if rel != "" {
				lines = append(lines, added(rel, n, allocs))
			}
			return nil
		})
		if err != nil {
			return api.Cid{}, "", err
		}
		root, rootName = api.NewCid(top.Cid()), ""
		if links := top.Links(); len(links) == 1 && !wrap {
			// The one top-level directory, reported last.
			root, rootName = api.NewCid(links[0].Cid), links[0].Name
		} else {
			lines = append(lines, added("", top, allocs))
		}
	}
	if err := sink.Flush(); err != nil {
		return api.Cid{}, "", fmt.Errorf("storing blocks in kubo: %w", err)
	}
	for _, o := range lines {
		if err := progress(o); err != nil {
			return api.Cid{}, "", err
		}
	}
	return root, rootName, nil
}

// added is the line that reports one added file or directory.
func added(name string, n ipld.Node, allocs []peer.ID) api.AddedOutput {
	size, _ := n.Size()
	return api.AddedOutput{Name: name, Cid: api.NewCid(n.Cid()), Size: size, Allocations: allocs}
}

// importCAR imports the one CAR file of an upload and reports it as IPFS
// Cluster does: its name, root, the bytes of its blocks (and the file
// size when the root is a UnixFS file).
func importCAR(ctx context.Context, entries iter.Seq2[api.AddEntry, error], sink *adder.Sink, allocs []peer.ID, progress func(api.AddedOutput) error) (api.Cid, string, error) {
	var name string
	var res adder.CARResult
	for e, err := range entries {
		if err != nil {
			return api.Cid{}, "", err
		}
		if name != "" {
			return api.Cid{}, "", fmt.Errorf("%w: format=car takes one CAR file per add", api.ErrBadRequest)
		}
		if e.Kind != api.EntryFile {
			return api.Cid{}, "", fmt.Errorf("%w: format=car takes one CAR file, not a directory or a link (%s)", api.ErrBadRequest, e.Path)
		}
		name = e.Path
		if res, err = adder.ImportCAR(ctx, e.Body, sink); err != nil {
			return api.Cid{}, "", fmt.Errorf("%w: %s: %v", api.ErrBadRequest, name, err)
		}
	}
	if name == "" {
		return api.Cid{}, "", fmt.Errorf("%w: the upload holds no CAR file", api.ErrBadRequest)
	}
	if err := sink.Flush(); err != nil {
		return api.Cid{}, "", fmt.Errorf("storing blocks in kubo: %w", err)
	}
	root := api.NewCid(res.Root)
	return root, name, progress(api.AddedOutput{Name: name, Cid: root, Bytes: res.Bytes, Size: res.Size, Allocations: allocs})
}

// pushTo is where an add's blocks are pushed besides this peer's kubo:
// nowhere with local (the allocated peers fetch them when they pin).
func pushTo(ap api.AddParams, allocs []peer.ID) []peer.ID {
	if ap.Local {
		return nil
	}
	return allocs
}

// countingReader counts the bytes read through it; n may be read while
// another goroutine reads.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// addErasure stores one file as K data and M parity shards, each a UnixFS
// file pinned on its own peer, plus an ec-meta pin under the CID that
// `ipfs add` gives the whole file. The upload is spooled to a temporary
// file (shards are computed from it), never held in memory.
func (p *Peer) addErasure(ctx context.Context, files iter.Seq2[api.AddEntry, error], ap api.AddParams, params adder.Params, progress func(api.AddedOutput) error) (api.Cid, error) {
	k, m := ap.DataShards, ap.ParityShards
	if k < 1 || m < 1 || k+m > 256 {
		return api.Cid{}, fmt.Errorf("%w: %d data and %d parity shards: want at least 1 of each, 256 in all", api.ErrBadRequest, k, m)
	}
	tmpDir, err := os.MkdirTemp("", "pinring-ec")
	if err != nil {
		return api.Cid{}, err
	}
	defer os.RemoveAll(tmpDir)
	spool, err := os.Create(path.Join(tmpDir, "file"))
	if err != nil {
		return api.Cid{}, err
	}
	defer spool.Close()
	var name string
	var whole ipld.Node
	var counter *countingReader
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
		counter = &countingReader{r: io.TeeReader(e.Body, spool)}
		// The whole file's CID, as `ipfs add` would give it (blocks discarded).
		if whole, err = adder.ImportFile(adder.NewSink(ctx, nil), counter, params); err != nil {
			return api.Cid{}, fmt.Errorf("adding %s: %w", name, err)
		}
	}
	if name == "" {
		return api.Cid{}, fmt.Errorf("%w: the upload holds no file", api.ErrBadRequest)
	}
	size := counter.n.Load()
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
	peers, err := p.shardPeers(len(shards), nil)
	if err != nil {
		return api.Cid{}, err
	}
	layout.Shards = make([]string, len(shards))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0) + 1)
	for i, f := range shards {
		g.Go(func() error {
			fan := p.sinkFor(pushTo(ap, []peer.ID{peers[i]}))
			defer fan.close()
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
	if err := p.writeShards(ctx, root, name, layout, ap.PinOptions, peers); err != nil {
		return api.Cid{}, err
	}
	if err := progress(api.AddedOutput{Name: name, Cid: root, Size: uint64(size), Allocations: peers}); err != nil {
		return api.Cid{}, err
	}
	return root, nil
}

// shardPeers picks a distinct peer for each of n shards where there are
// enough peers (most free space first), reusing peers round-robin where
// there are not, and avoiding the peers in avoid while others remain.
func (p *Peer) shardPeers(n int, avoid []peer.ID) ([]peer.ID, error) {
	var cands []peer.ID
	for _, c := range p.candidates() {
		if c.HasRoom() {
			cands = append(cands, c.Peer)
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: no peer can take shards (no valid metrics, or all full)", api.ErrBadRequest)
	}
	probe := api.Pin{PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: len(cands)}}
	order, err := p.allocate(&probe, nil)
	if err != nil {
		return nil, err
	}
	fresh := slices.DeleteFunc(slices.Clone(order), func(id peer.ID) bool { return slices.Contains(avoid, id) })
	if len(fresh) == 0 {
		fresh = order
	}
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = fresh[i%len(fresh)]
	}
	return out, nil
}

// writeShards records the shard pins (one replica each, on distinct peers)
// and the ec-meta pin.
func (p *Peer) writeShards(ctx context.Context, root api.Cid, name string, l adder.Layout, opts api.PinOptions, peers []peer.ID) error {
	for i, s := range l.Shards {
		c, _ := api.ParseCid(s)
		shard := api.Pin{Cid: c, Type: api.ShardType, MaxDepth: -1, Reference: root,
			PinOptions: api.PinOptions{Name: fmt.Sprintf("%s shard %d/%d", name, i+1, len(l.Shards)),
				ReplicationFactorMin: 1, ReplicationFactorMax: 1}}
		shard.Allocations = []peer.ID{peers[i]}
		if err := p.write(ctx, &shard); err != nil {
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
	return p.write(ctx, &meta)
}

// ecLayout reads the layout of an erasure-coded file.
func (p *Peer) ecLayout(ctx context.Context, c api.Cid) (api.Pin, adder.Layout, error) {
	pin, err := p.PinGet(ctx, c)
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

// shardAvailable reports whether shard i of l is held by a live peer,
// as far as the pinset and the heartbeats tell.
func (p *Peer) shardAvailable(ctx context.Context, s string) bool {
	c, err := api.ParseCid(s)
	if err != nil {
		return false
	}
	pin, err := p.PinGet(ctx, c)
	if err != nil || len(pin.Allocations) == 0 {
		return false
	}
	a := pin.Allocations[0]
	return a == p.host.ID() || p.monitor.Alive(a)
}

// openShards opens readers for the shards that are available, at least k
// of them, preferring data shards; the rest are nil.
func (p *Peer) openShards(ctx context.Context, l adder.Layout, skip map[int]bool) ([]io.Reader, []io.Closer, error) {
	readers := make([]io.Reader, len(l.Shards))
	var closers []io.Closer
	open := 0
	for i, s := range l.Shards {
		if open == l.K {
			break
		}
		if skip[i] || !p.shardAvailable(ctx, s) {
			continue
		}
		c, _ := api.ParseCid(s)
		rc, err := p.ipfs.Cat(ctx, c)
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

// ECGet implements restapi.Backend: it writes the original file to w from
// any K shards, reconstructing missing data shards when needed.
func (p *Peer) ECGet(ctx context.Context, c api.Cid, w io.Writer) error {
	_, l, err := p.ecLayout(ctx, c)
	if err != nil {
		return err
	}
	readers, closers, err := p.openShards(ctx, l, nil)
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
		files, cleanup, err := rebuildShards(l, readers, missing)
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
			sc, _ := api.ParseCid(l.Shards[i])
			rc, err := p.ipfs.Cat(ctx, sc)
			if err != nil {
				return err
			}
			readers[i] = rc
			closers = append(closers, rc)
		}
	}
	return adder.Join(w, readers[:l.K], l.K, l.M, l.Size)
}

// ECRepair implements restapi.Backend: it rebuilds the shards of
// erasure-coded files whose peers are not alive, from the surviving
// shards, stores them in this peer's kubo and allocates each to a live
// peer that holds no other shard of the file (where one exists). With c
// nil it handles every file this peer is in charge of.
func (p *Peer) ECRepair(ctx context.Context, c *api.Cid) ([]api.ECRepair, error) {
	if err := p.checkWrite(); err != nil {
		return nil, err
	}
	lost := func(a peer.ID) bool { return a != p.host.ID() && !p.monitor.Alive(a) }
	return p.ecRepair(ctx, c, lost)
}

// ecRepair does ECRepair with lost deciding which peers' shards are gone.
func (p *Peer) ecRepair(ctx context.Context, c *api.Cid, lost func(peer.ID) bool) ([]api.ECRepair, error) {
	var metas []api.Pin
	if c != nil {
		pin, _, err := p.ecLayout(ctx, *c)
		if err != nil {
			return nil, err
		}
		metas = append(metas, pin)
	} else {
		live := p.liveTrusted()
		err := p.eachPin(ctx, func(pin api.Pin) {
			if pin.Type == api.MetaType && repair.InCharge(p.host.ID(), pin.Cid.Key(), live) {
				metas = append(metas, pin)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	var out []api.ECRepair
	for _, meta := range metas {
		l, err := adder.LayoutFromMetadata(meta.Cid.String(), meta.Metadata)
		if err != nil {
			continue
		}
		res := p.repairFile(ctx, meta.Cid, l, lost)
		if len(res.Rebuilt) > 0 || res.Error != "" {
			out = append(out, res)
		}
	}
	return out, nil
}

// repairFile rebuilds the lost shards of one file.
func (p *Peer) repairFile(ctx context.Context, c api.Cid, l adder.Layout, lost func(peer.ID) bool) api.ECRepair {
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
		pin, err := p.PinGet(ctx, sc)
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
	fail := func(err error) api.ECRepair { res.Error = err.Error(); return res }
	readers, closers, err := p.openShards(ctx, l, missing)
	if err != nil {
		return fail(err)
	}
	defer func() {
		for _, cl := range closers {
			cl.Close()
		}
	}()
	files, cleanup, err := rebuildShards(l, readers, missing)
	defer cleanup()
	if err != nil {
		return fail(err)
	}
	var idx []int
	for i := range missing {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	to, err := p.shardPeers(len(idx), holders)
	if err != nil {
		return fail(err)
	}
	for j, i := range idx {
		f := files[i]
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fail(err)
		}
		fan := p.sinkFor([]peer.ID{to[j]})
		sink := adder.NewSink(ctx, fan)
		node, err := adder.ImportFile(sink, f, l.Params)
		if err == nil {
			err = sink.Flush()
		}
		fan.close()
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
		if err := p.write(ctx, &shard); err != nil {
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
func rebuildShards(l adder.Layout, readers []io.Reader, missing map[int]bool) (map[int]*os.File, func(), error) {
	files := map[int]*os.File{}
	tmp, err := os.MkdirTemp("", "pinring-ec")
	if err != nil {
		return nil, func() {}, err
	}
	cleanup := func() {
		for _, f := range files {
			f.Close()
		}
		os.RemoveAll(tmp)
	}
	fill := make([]io.Writer, len(l.Shards))
	for i := range missing {
		f, err := os.Create(path.Join(tmp, fmt.Sprint(i)))
		if err != nil {
			return nil, cleanup, err
		}
		files[i], fill[i] = f, f
	}
	return files, cleanup, adder.Reconstruct(l.K, l.M, readers, fill)
}
