package adder

import (
	"context"
	"fmt"
	"io"
	"iter"
	"strings"

	ipld "github.com/ipfs/go-ipld-format"

	"github.com/pinring/pinring/api"
)

// Upload imports the entries of an upload into UnixFS DAGs
// written to sink, reporting each file and each directory as ipfs add
// does, and returns the root: the one file, the one top-level directory, or
// the directory wrapping them all. Blocks are flushed before the root is
// reported, so that a client that reads it may fetch it.
func Upload(ctx context.Context, entries iter.Seq2[api.AddEntry, error], sink *Sink, params Params, wrap bool, progress func(api.AddedOutput) error) (api.Cid, string, error) {
	dir := NewDir(sink, params)
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
			target, rerr := io.ReadAll(io.LimitReader(e.Body, MaxSymlinkTarget+1))
			if rerr != nil {
				return api.Cid{}, "", fmt.Errorf("%w: reading symlink %s: %v", api.ErrBadRequest, e.Path, rerr)
			}
			if node, err = Symlink(sink, string(target), params); err != nil {
				return api.Cid{}, "", fmt.Errorf("%w: symlink %s: %v", api.ErrBadRequest, e.Path, err)
			}
		default:
			if node, err = ImportFile(sink, e.Body, params); err != nil {
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
		o := added(e.Path, node)
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
				lines = append(lines, added(rel, n))
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
			lines = append(lines, added("", top))
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
func added(name string, n ipld.Node) api.AddedOutput {
	size, _ := n.Size()
	return api.AddedOutput{Name: name, Cid: api.NewCid(n.Cid()), Size: size}
}

// UploadCAR imports the one CAR file of an upload and reports it as IPFS
// Cluster does: its name, root, the bytes of its blocks (and the file
// size when the root is a UnixFS file).
func UploadCAR(ctx context.Context, entries iter.Seq2[api.AddEntry, error], sink *Sink, progress func(api.AddedOutput) error) (api.Cid, string, error) {
	var name string
	var res CARResult
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
		if res, err = ImportCAR(ctx, e.Body, sink); err != nil {
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
	return root, name, progress(api.AddedOutput{Name: name, Cid: root, Bytes: res.Bytes, Size: res.Size})
}
