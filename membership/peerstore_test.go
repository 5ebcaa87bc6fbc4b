package membership

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// The members seen last are remembered, most recent first and at most as
// many as asked, never a stranger (its addresses would be dialled at every
// start); a file already holding them is left alone; lines that are not
// /p2p multiaddrs are skipped when read back.
func TestRememberAndReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peerstore")
	if got := Remembered(path); len(got) != 0 {
		t.Fatalf("no file: %v", got)
	}
	tb := New()
	t0 := time.Now()
	var ids []peer.ID
	for i := range 4 {
		pid := testkit.PeerID(t, i)
		ids = append(ids, pid)
		a := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", 4000+i, pid))
		writer := i < 3 // the last seen is a stranger
		tb.Saw(api.ID{ID: pid, Addresses: []ma.Multiaddr{a}}, writer, t0.Add(time.Duration(i)*time.Second), time.Minute)
	}
	if err := tb.Remember(path, 2); err != nil {
		t.Fatal(err)
	}
	got := Remembered(path)
	if len(got) != 2 || !hasPeer(got[0], ids[2]) || !hasPeer(got[1], ids[1]) {
		t.Fatalf("remembered %v, want the last two seen, the latest first", got)
	}
	st, _ := os.Stat(path)
	old := st.ModTime().Add(-time.Hour)
	os.Chtimes(path, old, old)
	if err := tb.Remember(path, 2); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); !st.ModTime().Equal(old) {
		t.Fatal("the same peers were written again")
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintln(f, "not a multiaddr\n/ip4/127.0.0.1/tcp/1\n# a comment")
	f.Close()
	if got := Remembered(path); len(got) != 2 {
		t.Fatalf("with bad lines: %v, want the 2 good ones", got)
	}
}

func hasPeer(a ma.Multiaddr, pid peer.ID) bool {
	info, err := peer.AddrInfoFromP2pAddr(a)
	return err == nil && info.ID == pid
}
