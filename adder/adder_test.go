package adder

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ipld "github.com/ipfs/go-ipld-format"
)

// recorder is a BlockSink that keeps what it is sent.
type recorder struct{ blocks map[string]int }

func (r *recorder) BlockPutMany(_ context.Context, blocks [][]byte, codec, mhType string) error {
	if r.blocks == nil {
		r.blocks = map[string]int{}
	}
	r.blocks[codec] += len(blocks)
	return nil
}

func TestImportMatchesKubo(t *testing.T) {
	ctx := context.Background()
	// `echo "hello world" | ipfs add` and `… --cid-version=1`.
	for _, tc := range []struct {
		p    Params
		want string
	}{
		{DefaultParams(), "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"},
		{Params{Chunker: "size-262144", CidVersion: 1, RawLeaves: true, HashFun: "sha2-256", Layout: "balanced"},
			"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"},
		// `ipfs add --raw-leaves`: the one leaf is the root, a CIDv1 raw
		// block even with CIDv0.
		{Params{Chunker: "size-262144", CidVersion: 0, RawLeaves: true, HashFun: "sha2-256", Layout: "balanced"},
			"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"},
	} {
		rec := &recorder{}
		sink := NewSink(ctx, rec)
		n, err := ImportFile(sink, strings.NewReader("hello world\n"), tc.p)
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Flush(); err != nil {
			t.Fatal(err)
		}
		if n.Cid().String() != tc.want || sink.Blocks != 1 {
			t.Fatalf("%+v: %s (%d blocks), want %s", tc.p, n.Cid(), sink.Blocks, tc.want)
		}
	}
	// A multi-chunk file: leaves and a parent, batched by codec.
	rec := &recorder{}
	p := DefaultParams()
	p.CidVersion, p.RawLeaves = 1, true
	sink := NewSink(ctx, rec)
	if _, err := ImportFile(sink, io.LimitReader(rand.Reader, 1<<20), p); err != nil {
		t.Fatal(err)
	}
	sink.Flush()
	if rec.blocks["raw"] != 4 || rec.blocks["dag-pb"] != 1 {
		t.Fatalf("blocks sent: %v, want 4 raw leaves and 1 dag-pb root", rec.blocks)
	}
}

func TestParamsValidate(t *testing.T) {
	for _, p := range []Params{
		{Chunker: "size-262144", CidVersion: 2, HashFun: "sha2-256", Layout: "balanced"},
		{Chunker: "size-262144", CidVersion: 0, HashFun: "blake2b-256", Layout: "balanced"},
		{Chunker: "weird", CidVersion: 1, HashFun: "sha2-256", Layout: "balanced"},
		{Chunker: "size-262144", CidVersion: 1, HashFun: "nope", Layout: "balanced"},
		{Chunker: "size-262144", CidVersion: 1, HashFun: "sha2-256", Layout: "spiral"},
	} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

// shardFiles encodes data into k+m temp files.
func shardFiles(t *testing.T, data []byte, k, m int) []*os.File {
	t.Helper()
	dir := t.TempDir()
	files := make([]*os.File, k+m)
	for i := range files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		files[i] = f
	}
	if err := Encode(bytes.NewReader(data), int64(len(data)), k, m, files); err != nil {
		t.Fatal(err)
	}
	return files
}

// Any m shards may be lost: the file comes back byte for byte.
func TestReconstructWithAnyMShardsMissing(t *testing.T) {
	const k, m = 4, 2
	for _, size := range []int{0, 1, 4095, 1 << 20, 1<<20 + 3} {
		data := make([]byte, size)
		rand.Read(data)
		files := shardFiles(t, data, k, m)
		shard := make([][]byte, k+m)
		for i, f := range files {
			shard[i], _ = io.ReadAll(f)
			if int64(len(shard[i])) != ShardSizeFor(int64(size), k) {
				t.Fatalf("size %d: shard %d has %d bytes, want %d", size, i, len(shard[i]), ShardSizeFor(int64(size), k))
			}
		}
		for a := 0; a < k+m; a++ {
			for b := a + 1; b < k+m; b++ {
				have := make([]io.Reader, k+m)
				fill := make([]io.Writer, k+m)
				rebuilt := map[int]*bytes.Buffer{}
				for i := range have {
					if i == a || i == b {
						rebuilt[i] = &bytes.Buffer{}
						fill[i] = rebuilt[i]
					} else {
						have[i] = bytes.NewReader(shard[i])
					}
				}
				if err := Reconstruct(k, m, have, fill); err != nil {
					t.Fatalf("size %d without %d and %d: %v", size, a, b, err)
				}
				for i, buf := range rebuilt {
					if !bytes.Equal(buf.Bytes(), shard[i]) {
						t.Fatalf("size %d: shard %d rebuilt wrong", size, i)
					}
				}
				data4 := make([]io.Reader, k)
				for i := range k {
					data4[i] = bytes.NewReader(shard[i])
				}
				var out bytes.Buffer
				if err := Join(&out, data4, k, m, int64(size)); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), data) {
					t.Fatalf("size %d: joined file differs", size)
				}
			}
		}
		// Three missing of 4+2: refused, not garbage.
		have := make([]io.Reader, k+m)
		for i := 3; i < k+m; i++ {
			have[i] = bytes.NewReader(shard[i])
		}
		if err := Reconstruct(k, m, have, []io.Writer{&bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}, nil, nil, nil}); err == nil {
			t.Fatalf("size %d: reconstructed from 3 of 6 shards", size)
		}
	}
}

func TestLayoutMetadataRoundTrip(t *testing.T) {
	l := Layout{Original: "Qm…", Size: 123, K: 4, M: 2, ShardSize: 31,
		Shards: []string{"a", "b", "c", "d", "e", "f"}, Params: DefaultParams()}
	back, err := LayoutFromMetadata(l.Original, l.Metadata())
	if err != nil || back.Size != 123 || back.K != 4 || back.M != 2 || len(back.Shards) != 6 || back.Params != l.Params {
		t.Fatalf("%+v %v", back, err)
	}
	meta := l.Metadata()
	meta[metaShards] = "a,b"
	if _, err := LayoutFromMetadata("x", meta); err == nil {
		t.Fatal("a layout with 2 of 6 shards was accepted")
	}
	if _, err := LayoutFromMetadata("x", map[string]string{"k": "v"}); err == nil {
		t.Fatal("plain metadata taken for a layout")
	}
}

func TestDirEmptyDirsSymlinksAndConflicts(t *testing.T) {
	ctx := context.Background()
	sink := NewSink(ctx, &recorder{})
	p := DefaultParams()
	d := NewDir(sink, p)
	if err := d.AddDir("empty"); err != nil {
		t.Fatal(err)
	}
	file, err := ImportFile(sink, strings.NewReader("hello world\n"), p)
	if err != nil {
		t.Fatal(err)
	}
	link, err := Symlink(sink, "file", p)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Add("file", file); err != nil {
		t.Fatal(err)
	}
	if err := d.Add("link", link); err != nil {
		t.Fatal(err)
	}
	// A name cannot be a file and a directory at once, in either order.
	if err := d.AddDir("file"); err == nil {
		t.Fatal("a directory over a file was accepted")
	}
	if err := d.Add("empty", file); err == nil {
		t.Fatal("a file over a directory was accepted")
	}
	if err := d.Add("file/inner", file); err == nil {
		t.Fatal("a path through a file was accepted")
	}
	root, err := d.Finish(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, l := range root.Links() {
		names[l.Name] = l.Cid.String()
	}
	// The empty UnixFS directory, as `ipfs add -r` makes it.
	if names["empty"] != "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn" || len(names) != 3 {
		t.Fatalf("top holds %v", names)
	}
	if names["link"] != link.Cid().String() || link.Cid().Equals(file.Cid()) {
		t.Fatalf("the symlink is %s in the directory, %s made", names["link"], link.Cid())
	}
	if _, err := Symlink(sink, "", p); err == nil {
		t.Fatal("an empty symlink target was accepted")
	}
	if _, err := Symlink(sink, strings.Repeat("x", MaxSymlinkTarget+1), p); err == nil {
		t.Fatal("an over-long symlink target was accepted")
	}
}

// Finish reports every directory once built, children first and siblings
// by name, the root last as "" — the order ipfs add prints them in.
func TestFinishReportsEveryDirectory(t *testing.T) {
	ctx := context.Background()
	p := DefaultParams()
	sink := NewSink(ctx, nil)
	file, err := ImportFile(sink, strings.NewReader("x"), p)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDir(sink, p)
	for _, f := range []string{"b/y/f", "a/f", "b/x/f", "top"} {
		if err := d.Add(f, file); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	seen := map[string]ipld.Node{}
	root, err := d.Finish(ctx, func(rel string, n ipld.Node) error {
		got = append(got, rel)
		seen[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b/x", "b/y", "b", ""}; !slices.Equal(got, want) {
		t.Fatalf("reported %q, want %q", got, want)
	}
	if !seen[""].Cid().Equals(root.Cid()) {
		t.Fatalf("the last one reported is %s, the root %s", seen[""].Cid(), root.Cid())
	}
	if l, _, err := root.ResolveLink([]string{"b"}); err != nil || !l.Cid.Equals(seen["b"].Cid()) {
		t.Fatalf("b in the root is %v (%v), reported %s", l, err, seen["b"].Cid())
	}
	stop := errors.New("stop")
	if _, err := d.Finish(ctx, func(string, ipld.Node) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("an error from each gave %v", err)
	}
}
