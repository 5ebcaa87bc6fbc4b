package peer

import (
	"context"
	"fmt"
	"io"
	"iter"
	"strings"

	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/adder"
	"github.com/pinring/pinring/api"
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
		return p.ec.Add(ctx, files, ap, params, progress)
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
	defer fan.Close()
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
