// Package adder turns files into UnixFS DAGs with boxo, as `ipfs add`
// does (same chunker, layout, leaves and CIDs for the same options), and
// writes their blocks to a kubo with block/put in batches, streaming: a
// file is never held whole in memory.
package adder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/boxo/ipld/unixfs/importer/trickle"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	car "github.com/ipld/go-car/v2"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"
)

// Params are `ipfs add`'s options that change the CID.
type Params struct {
	// Chunker as kubo spells it: "size-262144" (default), "rabin-…",
	// "buzhash".
	Chunker string `json:"chunker"`
	// RawLeaves stores leaves as raw blocks (default: true with CIDv1).
	RawLeaves bool `json:"raw_leaves"`
	// CidVersion is 0 (default) or 1.
	CidVersion int `json:"cid_version"`
	// HashFun is a multihash name, default "sha2-256".
	HashFun string `json:"hash"`
	// Layout is "balanced" (default) or "trickle".
	Layout string `json:"layout"`
}

// DefaultParams are kubo's defaults.
func DefaultParams() Params {
	return Params{Chunker: "size-262144", CidVersion: 0, HashFun: "sha2-256", Layout: "balanced"}
}

// Validate checks the parameters.
func (p Params) Validate() error {
	if p.CidVersion != 0 && p.CidVersion != 1 {
		return fmt.Errorf("cid-version %d: want 0 or 1", p.CidVersion)
	}
	code, ok := mh.Names[p.HashFun]
	if !ok {
		return fmt.Errorf("hash %q: unknown multihash function", p.HashFun)
	}
	// With CIDv0 and raw leaves, the leaves are CIDv1 raw blocks and the
	// nodes above them CIDv0, as ipfs add --raw-leaves makes them.
	if p.CidVersion == 0 && code != mh.SHA2_256 {
		return errors.New("CIDv0 allows only sha2-256: use --cid-version 1 for another hash")
	}
	if p.Layout != "balanced" && p.Layout != "trickle" {
		return fmt.Errorf("layout %q: want balanced or trickle", p.Layout)
	}
	if _, err := chunker.FromString(strings.NewReader(""), p.Chunker); err != nil {
		return fmt.Errorf("chunker %q: %v", p.Chunker, err)
	}
	return nil
}

func (p Params) prefix() cid.Prefix {
	pre, _ := merkledag.PrefixForCidVersion(p.CidVersion)
	pre.MhType = mh.Names[p.HashFun]
	pre.MhLength = -1
	return pre
}

// BlockSink stores blocks (e.g. a kubo's block/put).
type BlockSink interface {
	// BlockPutMany stores blocks that share a codec and hash function.
	BlockPutMany(ctx context.Context, blocks [][]byte, codec, mhType string) error
}

// Sink is an ipld.DAGService that only writes, batching blocks by codec
// and hash function and sending each batch to a BlockSink. Call Flush at
// the end. A nil sink discards the blocks (to compute a CID only).
type Sink struct {
	ctx     context.Context
	sink    BlockSink
	mu      sync.Mutex
	batches map[blockKind][][]byte
	sizes   map[blockKind]int
	Blocks  int   // blocks written so far
	Bytes   int64 // their total size
}

// blockKind is what the blocks of one batch share: kubo's block/put takes
// one codec and one hash function a call.
type blockKind struct{ codec, hash uint64 }

const batchBytes = 4 << 20

// NewSink writes to sink.
func NewSink(ctx context.Context, sink BlockSink) *Sink {
	return &Sink{ctx: ctx, sink: sink, batches: map[blockKind][][]byte{}, sizes: map[blockKind]int{}}
}

var _ ipld.DAGService = (*Sink)(nil)

// Add queues one node's block.
func (s *Sink) Add(ctx context.Context, n ipld.Node) error {
	return s.Put(ctx, n.Cid(), n.RawData())
}

// Put queues one block that hashes to c (the caller checked it does).
func (s *Sink) Put(ctx context.Context, c cid.Cid, data []byte) error {
	pre := c.Prefix()
	k := blockKind{pre.Codec, pre.MhType}
	s.mu.Lock()
	s.batches[k] = append(s.batches[k], data)
	s.sizes[k] += len(data)
	s.Blocks++
	s.Bytes += int64(len(data))
	full := s.sizes[k] >= batchBytes
	s.mu.Unlock()
	if full {
		return s.flush(ctx, k)
	}
	return nil
}

// AddMany queues nodes.
func (s *Sink) AddMany(ctx context.Context, ns []ipld.Node) error {
	for _, n := range ns {
		if err := s.Add(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sink) flush(ctx context.Context, k blockKind) error {
	s.mu.Lock()
	batch := s.batches[k]
	delete(s.batches, k)
	delete(s.sizes, k)
	s.mu.Unlock()
	if s.sink == nil || len(batch) == 0 {
		return nil
	}
	codec, hash := multicodec.Code(k.codec).String(), mh.Codes[k.hash]
	if strings.HasPrefix(codec, "Code(") || hash == "" {
		return fmt.Errorf("unknown codec %#x or hash function %#x", k.codec, k.hash)
	}
	return s.sink.BlockPutMany(ctx, batch, codec, hash)
}

// Flush sends every queued block.
func (s *Sink) Flush() error {
	s.mu.Lock()
	kinds := slices.Collect(maps.Keys(s.batches))
	s.mu.Unlock()
	for _, k := range kinds {
		if err := s.flush(s.ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// Get is not supported: the sink only writes.
func (s *Sink) Get(context.Context, cid.Cid) (ipld.Node, error) {
	return nil, errors.New("adder sink: write only")
}

// GetMany is not supported.
func (s *Sink) GetMany(context.Context, []cid.Cid) <-chan *ipld.NodeOption {
	ch := make(chan *ipld.NodeOption, 1)
	ch <- &ipld.NodeOption{Err: errors.New("adder sink: write only")}
	close(ch)
	return ch
}

// Remove is a no-op.
func (s *Sink) Remove(context.Context, cid.Cid) error { return nil }

// RemoveMany is a no-op.
func (s *Sink) RemoveMany(context.Context, []cid.Cid) error { return nil }

// ImportFile chunks r into a UnixFS file DAG written to ds and returns its
// root.
func ImportFile(ds ipld.DAGService, r io.Reader, p Params) (ipld.Node, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	spl, err := chunker.FromString(r, p.Chunker)
	if err != nil {
		return nil, err
	}
	dbp := helpers.DagBuilderParams{Maxlinks: helpers.DefaultLinksPerBlock, RawLeaves: p.RawLeaves,
		CidBuilder: p.prefix(), Dagserv: ds}
	db, err := dbp.New(spl)
	if err != nil {
		return nil, err
	}
	if p.Layout == "trickle" {
		return trickle.Layout(db)
	}
	return balanced.Layout(db)
}

// MaxSymlinkTarget bounds a symlink's target (Linux's PATH_MAX).
const MaxSymlinkTarget = 4096

// Symlink makes the UnixFS node of a symbolic link to target, written to
// ds, as ipfs add makes it.
func Symlink(ds ipld.DAGService, target string, p Params) (ipld.Node, error) {
	if target == "" || len(target) > MaxSymlinkTarget {
		return nil, fmt.Errorf("symlink target of %d bytes: want 1 to %d", len(target), MaxSymlinkTarget)
	}
	data, err := ft.SymlinkData(target)
	if err != nil {
		return nil, err
	}
	n := merkledag.NodeWithData(data)
	if err := n.SetCidBuilder(p.prefix()); err != nil {
		return nil, err
	}
	return n, ds.Add(context.Background(), n)
}

// Dir builds a UnixFS directory tree from files added in any order.
type Dir struct {
	ds   ipld.DAGService
	p    Params
	root *dirNode
}

type dirNode struct {
	files map[string]ipld.Node
	dirs  map[string]*dirNode
}

func newDirNode() *dirNode {
	return &dirNode{files: map[string]ipld.Node{}, dirs: map[string]*dirNode{}}
}

// NewDir starts an empty directory written to ds.
func NewDir(ds ipld.DAGService, p Params) *Dir { return &Dir{ds: ds, p: p, root: newDirNode()} }

// Add places node at the slash-separated relative path.
func (d *Dir) Add(rel string, node ipld.Node) error {
	parts, err := splitPath(rel)
	if err != nil {
		return err
	}
	parent, err := d.walk(parts[:len(parts)-1])
	if err != nil {
		return err
	}
	name := parts[len(parts)-1]
	if _, ok := parent.dirs[name]; ok {
		return fmt.Errorf("%q is both a directory and a file", rel)
	}
	parent.files[name] = node
	return nil
}

// AddDir makes sure the directory at rel exists, empty if nothing is
// added under it.
func (d *Dir) AddDir(rel string) error {
	parts, err := splitPath(rel)
	if err != nil {
		return err
	}
	_, err = d.walk(parts)
	return err
}

// MaxPathDepth bounds how deep a path in an upload may go: the
// directory tree is built and encoded recursively, and a path millions of
// directories deep would overflow the stack (a crash, not an error).
const MaxPathDepth = 1024

func splitPath(rel string) ([]string, error) {
	rel = path.Clean(strings.TrimPrefix(rel, "/"))
	if rel == "." || strings.HasPrefix(rel, "../") || rel == ".." {
		return nil, fmt.Errorf("bad path %q in a directory", rel)
	}
	if n := strings.Count(rel, "/") + 1; n > MaxPathDepth {
		return nil, fmt.Errorf("a path %d directories deep, at most %d", n, MaxPathDepth)
	}
	return strings.Split(rel, "/"), nil
}

// walk returns the directory at parts, creating what is missing.
func (d *Dir) walk(parts []string) (*dirNode, error) {
	cur := d.root
	for i, dir := range parts {
		if _, ok := cur.files[dir]; ok {
			return nil, fmt.Errorf("%q is both a file and a directory", strings.Join(parts[:i+1], "/"))
		}
		next := cur.dirs[dir]
		if next == nil {
			next = newDirNode()
			cur.dirs[dir] = next
		}
		cur = next
	}
	return cur, nil
}

// Finish writes the directory nodes and returns the root. each, when not
// nil, is told of every directory once it is built, children before their
// parent and siblings by name (as ipfs add reports them), with its
// slash-separated path; the root comes last, as "".
func (d *Dir) Finish(ctx context.Context, each func(rel string, n ipld.Node) error) (ipld.Node, error) {
	return d.build(ctx, d.root, "", each)
}

func (d *Dir) build(ctx context.Context, n *dirNode, rel string, each func(string, ipld.Node) error) (ipld.Node, error) {
	dir, err := uio.NewDirectory(d.ds)
	if err != nil {
		return nil, err
	}
	dir.SetCidBuilder(d.p.prefix())
	for _, name := range slices.Sorted(maps.Keys(n.dirs)) {
		node, err := d.build(ctx, n.dirs[name], path.Join(rel, name), each)
		if err != nil {
			return nil, err
		}
		if err := dir.AddChild(ctx, name, node); err != nil {
			return nil, err
		}
	}
	for name, node := range n.files {
		if err := dir.AddChild(ctx, name, node); err != nil {
			return nil, err
		}
	}
	node, err := dir.GetNode()
	if err != nil {
		return nil, err
	}
	if err := d.ds.Add(ctx, node); err != nil {
		return nil, err
	}
	if each != nil {
		if err := each(rel, node); err != nil {
			return nil, err
		}
	}
	return node, nil
}

// MaxCARBlock is the largest block a CAR import takes: what kubo's bitswap
// moves between peers, so that every allocated peer can fetch it.
const MaxCARBlock = 2 << 20

// CARResult is what ImportCAR read.
type CARResult struct {
	Root   cid.Cid
	Blocks int
	Bytes  int64  // the blocks' total size
	Size   uint64 // the file size when the root is a UnixFS file in the CAR
}

// ImportCAR reads a CAR file (v1 or v2) whose header names exactly one
// root, checks every block against its CID and writes it to ds (blocks
// with identity CIDs hold their data in the CID and are not stored).
func ImportCAR(ctx context.Context, r io.Reader, ds *Sink) (CARResult, error) {
	br, err := car.NewBlockReader(r, car.MaxAllowedHeaderSize(64<<10), car.MaxAllowedSectionSize(MaxCARBlock+128))
	if err != nil {
		return CARResult{}, fmt.Errorf("not a CAR file: %w", err)
	}
	if len(br.Roots) != 1 {
		return CARResult{}, fmt.Errorf("a CAR file to add must name exactly one root; this one names %d", len(br.Roots))
	}
	res := CARResult{Root: br.Roots[0]}
	for {
		b, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("CAR block %d: %w", res.Blocks+1, err)
		}
		c, data := b.Cid(), b.RawData()
		if len(data) > MaxCARBlock {
			return res, fmt.Errorf("CAR block %s is %d bytes; blocks over %d bytes cannot be fetched by other peers", c, len(data), MaxCARBlock)
		}
		res.Blocks++
		res.Bytes += int64(len(data))
		if c.Equals(res.Root) && c.Type() == cid.DagProtobuf {
			if n, err := merkledag.DecodeProtobuf(data); err == nil {
				if fs, err := ft.FSNodeFromBytes(n.Data()); err == nil {
					res.Size = fs.FileSize()
				}
			}
		}
		if c.Prefix().MhType == mh.IDENTITY {
			continue
		}
		if err := ds.Put(ctx, c, data); err != nil {
			return res, err
		}
	}
	return res, nil
}
