package adder

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	mh "github.com/multiformats/go-multihash"
)

type carBlock struct {
	c    cid.Cid
	data []byte
}

func block(t *testing.T, codec uint64, data []byte) carBlock {
	t.Helper()
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return carBlock{cid.NewCidV1(codec, h), data}
}

// writeCAR writes a CARv1 with these roots and blocks, as ipfs dag export
// would.
func writeCAR(t *testing.T, roots []cid.Cid, bs ...carBlock) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	w, err := storage.NewWritable(&buf, roots, car.WriteAsCarV1(true), car.AllowDuplicatePuts(true), car.StoreIdentityCIDs(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if err := w.Put(context.Background(), b.c.KeyString(), b.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestImportCAR(t *testing.T) {
	ctx := context.Background()
	leaf := block(t, cid.Raw, []byte("hello"))
	// dag-cbor {"to": "world", "message": leaf}: any IPLD DAG, not only UnixFS.
	cb := append([]byte{0xa2, 0x62, 't', 'o', 0x65, 'w', 'o', 'r', 'l', 'd', 0x67, 'm', 'e', 's', 's', 'a', 'g', 'e', 0xd8, 0x2a, 0x58, byte(len(leaf.c.Bytes()) + 1), 0}, leaf.c.Bytes()...)
	root := block(t, cid.DagCBOR, cb)
	id, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}.Sum([]byte("inline"))

	rec := &recorder{}
	res, err := ImportCAR(ctx, writeCAR(t, []cid.Cid{root.c}, root, leaf, carBlock{id, []byte("inline")}), NewSink(ctx, rec))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Root.Equals(root.c) || res.Blocks != 3 || res.Bytes != int64(len(cb)+len("hello")+len("inline")) || res.Size != 0 {
		t.Fatalf("read %+v", res)
	}
	// Blocks wait in the sink for Flush, by codec; the identity block is
	// not stored.
	s := NewSink(ctx, rec)
	if _, err := ImportCAR(ctx, writeCAR(t, []cid.Cid{root.c}, root, leaf, carBlock{id, []byte("inline")}), s); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if rec.blocks["dag-cbor"] != 1 || rec.blocks["raw"] != 1 || len(rec.blocks) != 2 {
		t.Fatalf("kubo was sent %v", rec.blocks)
	}

	// A UnixFS file as root: its size is reported, as IPFS Cluster does.
	c := &collect{Sink: NewSink(ctx, nil)}
	file, err := ImportFile(c, strings.NewReader(strings.Repeat("x", 300_000)), DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	res, err = ImportCAR(ctx, writeCAR(t, []cid.Cid{file.Cid()}, c.blocks...), NewSink(ctx, nil))
	if err != nil || res.Size != 300_000 || res.Blocks != 3 {
		t.Fatalf("UnixFS root: %+v, %v", res, err)
	}

	// Each bad CAR fails with an error that names what is wrong.
	tampered := carBlock{leaf.c, []byte("hullo")}
	big := block(t, cid.Raw, make([]byte, MaxCARBlock+1))
	for name, tc := range map[string]struct {
		r    *bytes.Buffer
		want string
	}{
		"no root":     {writeCAR(t, nil, leaf), "exactly one root; this one names 0"},
		"two roots":   {writeCAR(t, []cid.Cid{root.c, leaf.c}, root, leaf), "names 2"},
		"tampered":    {writeCAR(t, []cid.Cid{leaf.c}, tampered), "mismatch"},
		"big block":   {writeCAR(t, []cid.Cid{big.c}, big), "cannot be fetched"},
		"not a CAR":   {bytes.NewBufferString("hello world, not a CAR file"), "not a CAR file"},
		"cut in half": {bytes.NewBuffer(writeCAR(t, []cid.Cid{root.c}, root, leaf).Bytes()[:70]), "CAR block"},
	} {
		if _, err := ImportCAR(ctx, tc.r, NewSink(ctx, nil)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}

// collect keeps the blocks of an import, to write them into a CAR.
type collect struct {
	*Sink
	blocks []carBlock
}

func (c *collect) Add(_ context.Context, n ipld.Node) error {
	c.blocks = append(c.blocks, carBlock{n.Cid(), n.RawData()})
	return nil
}

func (c *collect) AddMany(ctx context.Context, ns []ipld.Node) error {
	for _, n := range ns {
		_ = c.Add(ctx, n)
	}
	return nil
}
