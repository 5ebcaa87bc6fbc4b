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
	"path"
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
	if p.CidVersion == 0 && (code != mh.SHA2_256 || p.RawLeaves) {
		return errors.New("CIDv0 allows only sha2-256 without raw leaves: use --cid-version 1")
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
// and sending each batch to a BlockSink. Call Flush at the end. A nil sink
// discards the blocks (to compute a CID only).
type Sink struct {
	ctx     context.Context
	sink    BlockSink
	hash    string
	mu      sync.Mutex
	batches map[uint64][][]byte
	sizes   map[uint64]int
	Blocks  int   // blocks written so far
	Bytes   int64 // their total size
}

const batchBytes = 4 << 20

// NewSink writes to sink, hashing with hashFun (a multihash name).
func NewSink(ctx context.Context, sink BlockSink, hashFun string) *Sink {
	return &Sink{ctx: ctx, sink: sink, hash: hashFun, batches: map[uint64][][]byte{}, sizes: map[uint64]int{}}
}

var _ ipld.DAGService = (*Sink)(nil)

// Add queues one node's block.
func (s *Sink) Add(ctx context.Context, n ipld.Node) error {
	s.mu.Lock()
	codec := n.Cid().Prefix().Codec
	s.batches[codec] = append(s.batches[codec], n.RawData())
	s.sizes[codec] += len(n.RawData())
	s.Blocks++
	s.Bytes += int64(len(n.RawData()))
	full := s.sizes[codec] >= batchBytes
	s.mu.Unlock()
	if full {
		return s.flush(ctx, codec)
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

func (s *Sink) flush(ctx context.Context, codec uint64) error {
	s.mu.Lock()
	batch := s.batches[codec]
	delete(s.batches, codec)
	delete(s.sizes, codec)
	s.mu.Unlock()
	if s.sink == nil || len(batch) == 0 {
		return nil
	}
	var name string
	switch codec {
	case cid.DagProtobuf:
		name = "dag-pb"
	case cid.Raw:
		name = "raw"
	default:
		return fmt.Errorf("unexpected codec %#x in a UnixFS DAG", codec)
	}
	return s.sink.BlockPutMany(ctx, batch, name, s.hash)
}

// Flush sends every queued block.
func (s *Sink) Flush() error {
	s.mu.Lock()
	var codecs []uint64
	for c := range s.batches {
		codecs = append(codecs, c)
	}
	s.mu.Unlock()
	for _, c := range codecs {
		if err := s.flush(s.ctx, c); err != nil {
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

func splitPath(rel string) ([]string, error) {
	rel = path.Clean(strings.TrimPrefix(rel, "/"))
	if rel == "." || strings.HasPrefix(rel, "../") || rel == ".." {
		return nil, fmt.Errorf("bad path %q in a directory", rel)
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

// Finish writes the directory nodes and returns the root.
func (d *Dir) Finish(ctx context.Context) (ipld.Node, error) { return d.build(ctx, d.root) }

func (d *Dir) build(ctx context.Context, n *dirNode) (ipld.Node, error) {
	dir, err := uio.NewDirectory(d.ds)
	if err != nil {
		return nil, err
	}
	dir.SetCidBuilder(d.p.prefix())
	for name, sub := range n.dirs {
		node, err := d.build(ctx, sub)
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
	return node, d.ds.Add(ctx, node)
}
