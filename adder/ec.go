package adder

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/klauspost/reedsolomon"
)

// Layout describes an erasure-coded file: its K data and M parity shards,
// each stored as a UnixFS file of its own, and how they were made. It
// lives in the metadata of the file's ec-meta pin.
type Layout struct {
	Original  string   // the CID `ipfs add` gives the whole file
	Size      int64    // the file's size
	K, M      int      // data and parity shards
	ShardSize int64    // bytes in every shard (the last data shard is padded)
	Shards    []string // shard CIDs: data first, then parity
	Params    Params   // how the shards were imported
}

// Metadata keys of an ec-meta pin.
const (
	metaEC        = "ec"
	metaSize      = "ec.size"
	metaK         = "ec.data-shards"
	metaM         = "ec.parity-shards"
	metaShardSize = "ec.shard-size"
	metaShards    = "ec.shards"
	metaParams    = "ec.params"
)

// ErrNotEC is returned for metadata that describes no erasure-coded file.
var ErrNotEC = errors.New("not an erasure-coded file")

// Metadata encodes the layout.
func (l Layout) Metadata() map[string]string {
	return map[string]string{
		metaEC: "1", metaSize: strconv.FormatInt(l.Size, 10), metaK: strconv.Itoa(l.K), metaM: strconv.Itoa(l.M),
		metaShardSize: strconv.FormatInt(l.ShardSize, 10), metaShards: strings.Join(l.Shards, ","),
		metaParams: fmt.Sprintf("%s;%d;%t;%s;%s", l.Params.Chunker, l.Params.CidVersion, l.Params.RawLeaves, l.Params.HashFun, l.Params.Layout),
	}
}

// LayoutFromMetadata decodes and checks a layout.
func LayoutFromMetadata(original string, meta map[string]string) (Layout, error) {
	if meta[metaEC] != "1" {
		return Layout{}, ErrNotEC
	}
	l := Layout{Original: original}
	var err error
	bad := func(what string) (Layout, error) {
		return Layout{}, fmt.Errorf("%w: bad %s in its metadata", ErrNotEC, what)
	}
	if l.Size, err = strconv.ParseInt(meta[metaSize], 10, 64); err != nil || l.Size < 0 {
		return bad("size")
	}
	if l.K, err = strconv.Atoi(meta[metaK]); err != nil || l.K < 1 {
		return bad("data shard count")
	}
	if l.M, err = strconv.Atoi(meta[metaM]); err != nil || l.M < 1 {
		return bad("parity shard count")
	}
	if l.ShardSize, err = strconv.ParseInt(meta[metaShardSize], 10, 64); err != nil || l.ShardSize < 0 {
		return bad("shard size")
	}
	l.Shards = strings.Split(meta[metaShards], ",")
	if len(l.Shards) != l.K+l.M {
		return bad("shard list")
	}
	p := strings.Split(meta[metaParams], ";")
	if len(p) != 5 {
		return bad("import parameters")
	}
	l.Params.Chunker, l.Params.HashFun, l.Params.Layout = p[0], p[3], p[4]
	if l.Params.CidVersion, err = strconv.Atoi(p[1]); err != nil {
		return bad("CID version")
	}
	if l.Params.RawLeaves, err = strconv.ParseBool(p[2]); err != nil {
		return bad("raw leaves")
	}
	return l, l.Params.Validate()
}

// ShardSizeFor is the size of each shard of a file of size bytes cut into
// k data shards.
func ShardSizeFor(size int64, k int) int64 {
	if size == 0 {
		return 1 // an empty file still has shards to reconstruct from
	}
	return (size + int64(k) - 1) / int64(k)
}

// Encode splits the file in src (size bytes) into k data shards and m
// parity shards, written to shards[0..k+m) (files, as parity is computed
// from the data shards read back). Memory stays small: the streaming
// encoder works block by block.
func Encode(src io.Reader, size int64, k, m int, shards []*os.File) error {
	if len(shards) != k+m {
		return fmt.Errorf("encode: %d shard files for %d+%d", len(shards), k, m)
	}
	enc, err := reedsolomon.NewStream(k, m)
	if err != nil {
		return err
	}
	data := make([]io.Writer, k)
	for i := range k {
		data[i] = shards[i]
	}
	if size == 0 {
		// Split refuses an empty input: one zero byte per shard.
		for _, w := range data {
			if _, err := w.Write([]byte{0}); err != nil {
				return err
			}
		}
	} else if err := enc.Split(src, data, size); err != nil {
		return fmt.Errorf("splitting into %d shards: %w", k, err)
	}
	in := make([]io.Reader, k)
	for i := range k {
		if _, err := shards[i].Seek(0, io.SeekStart); err != nil {
			return err
		}
		in[i] = shards[i]
	}
	parity := make([]io.Writer, m)
	for i := range m {
		parity[i] = shards[k+i]
	}
	if err := enc.Encode(in, parity); err != nil {
		return fmt.Errorf("computing parity: %w", err)
	}
	for _, f := range shards {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	return nil
}

// Reconstruct writes the missing shards (fill[i] non-nil) from the present
// ones (have[i] non-nil); at least K must be present.
func Reconstruct(k, m int, have []io.Reader, fill []io.Writer) error {
	enc, err := reedsolomon.NewStream(k, m)
	if err != nil {
		return err
	}
	n := 0
	for _, r := range have {
		if r != nil {
			n++
		}
	}
	if n < k {
		return fmt.Errorf("only %d of %d shards are available, %d are needed", n, k+m, k)
	}
	return enc.Reconstruct(have, fill)
}

// Join writes the original file from the k data shards.
func Join(dst io.Writer, data []io.Reader, k, m int, size int64) error {
	enc, err := reedsolomon.NewStream(k, m)
	if err != nil {
		return err
	}
	if size == 0 {
		return nil
	}
	shards := make([]io.Reader, k+m)
	copy(shards, data)
	return enc.Join(dst, shards, size)
}
