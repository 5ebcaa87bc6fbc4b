package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/restapi/client"
)

// A pin whose CID is too long for the datastore (a 60 KB identity CID) is
// refused with a 400 naming the bound, and the writes after it replicate.
// Before the bound it was acknowledged, the packer failed on it for ever,
// and every write after it stayed on the peer.
func TestOversizedRecordsAreRefusedAndLaterWritesReplicate(t *testing.T) {
	key := newWriteKey(t)
	a := startClusterPeer(t, "oversized", key, nil)
	b := startClusterPeer(t, "oversized", key, nil, a.P2PAddrs()[0].String())
	digest, err := mh.Sum(make([]byte, 60_000), mh.IDENTITY, -1)
	if err != nil {
		t.Fatal(err)
	}
	huge := cid.NewCidV1(cid.Raw, digest).String()
	base := "http://" + a.APIAddr()
	for _, tc := range []struct{ what, url, want string }{
		{"a 60 KB identity CID", base + "/pins/" + huge, "at most 256 bytes"},
		{"a 300-byte name", base + "/pins/" + testkit.Cid(1).String() + "?name=" + strings.Repeat("n", 300), "name is 300 bytes, at most 255"},
		{"65 metadata entries", base + "/pins/" + testkit.Cid(1).String() + "?" + metaQuery(65), "65 metadata entries, at most 64"},
	} {
		resp, err := http.Post(tc.url, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e api.Error
		if resp.StatusCode != 400 || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Message, tc.want) {
			t.Fatalf("%s: %d %.300s, want 400 saying %q", tc.what, resp.StatusCode, body, tc.want)
		}
	}
	cl, _ := client.New(a.APIAddr(), 0)
	ctx := context.Background()
	for i := range 3 {
		if _, err := cl.Pin(ctx, testkit.Cid(10+i), api.PinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 20*time.Second, "the later pins at b", func() bool {
		for i := range 3 {
			if _, err := b.PinGet(ctx, testkit.Cid(10+i)); err != nil {
				return false
			}
		}
		return true
	})
	if n := a.st().Unpacked(); n != 0 {
		t.Fatalf("%d writes still unpacked at a", n)
	}
}

func metaQuery(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("meta-k%d=v", i))
	}
	return strings.Join(parts, "&")
}

// A peer key others may read is refused at start, saying how to fix it.
// Before, it was used.
func TestIdentityReadableByOthersIsRefused(t *testing.T) {
	dir := t.TempDir()
	if _, err := peerconfig.NewIdentity(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, peerconfig.IdentityFile)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := peerconfig.LoadIdentity(dir); err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Fatalf("a peer key of mode 644: %v, want a refusal saying chmod 600", err)
	}
	os.Chmod(path, 0o600)
	if _, err := peerconfig.LoadIdentity(dir); err != nil {
		t.Fatal(err)
	}
}
