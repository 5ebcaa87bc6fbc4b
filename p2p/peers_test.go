package p2p

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// A writer answers with the peers it knows, after proving it is a writer;
// a peer that cannot prove it is one gets its answer refused whole, as
// does a writer answering with more than MaxPeers peers or a peer of more
// than maxPeerEntry bytes; one caller gets one answer per peersEvery.
func TestAskPeersTakesAWritersAnswerOnly(t *testing.T) {
	hs := connectedHosts(t, 4)
	writer, newcomer, stranger, other := hs[0], hs[1], hs[2], hs[3]
	writers := map[peer.ID]bool{writer.ID(): true}
	known := []api.ID{{ID: writer.ID(), Peername: "w"}, {ID: other.ID(), Peername: "o"}}
	ServePeers(writer, proof{writer.ID(), writers}, func() []api.ID { return known })
	ctx := context.Background()
	raw, err := AskPeers(ctx, newcomer, writer.ID(), proof{newcomer.ID(), writers})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range raw {
		var id api.ID
		if err := json.Unmarshal(b, &id); err != nil {
			t.Fatal(err)
		}
		got = append(got, id.Peername)
	}
	if fmt.Sprint(got) != "[w o]" {
		t.Fatalf("got %v, want the writer's two peers", got)
	}
	// Again at once: reset (one answer a caller per peersEvery), which
	// says nothing of whether the peer is a writer.
	if _, err := AskPeers(ctx, newcomer, writer.ID(), proof{newcomer.ID(), writers}); err == nil || errors.Is(err, ErrNotAWriter) {
		t.Fatalf("a second request within peersEvery: %v, want an error other than ErrNotAWriter", err)
	}
	// A peer that does not serve the protocol (a follower): not a writer.
	if _, err := AskPeers(ctx, newcomer, other.ID(), proof{newcomer.ID(), writers}); !errors.Is(err, ErrNotAWriter) {
		t.Fatalf("a peer not serving the protocol: %v, want ErrNotAWriter", err)
	}

	// A stranger serving the protocol without being a writer: refused.
	ServePeers(stranger, proof{stranger.ID(), writers}, func() []api.ID { return known })
	if _, err := AskPeers(ctx, newcomer, stranger.ID(), proof{newcomer.ID(), writers}); !errors.Is(err, ErrNotAWriter) {
		t.Fatalf("a stranger's answer: %v, want ErrNotAWriter", err)
	}

	// A writer (other, here) answering beyond the bounds: refused.
	writers[other.ID()] = true
	for name, answer := range map[string]func(w *bufio.Writer){
		"4,097 peers": func(w *bufio.Writer) {
			for i := range MaxPeers + 1 {
				fmt.Fprintf(w, "{\"peername\":\"p%d\"}\n", i)
			}
		},
		"a peer of 256 KiB": func(w *bufio.Writer) {
			fmt.Fprintf(w, "{\"peername\":\"%0*d\"}\n", maxPeerEntry, 0)
		},
	} {
		other.SetStreamHandler(Peers.ID, func(s network.Stream) {
			defer s.Close()
			w := bufio.NewWriter(s)
			proof{other.ID(), writers}.Write(w)
			answer(w)
			w.Flush()
		})
		if raw, err := AskPeers(ctx, newcomer, other.ID(), proof{newcomer.ID(), writers}); err == nil {
			t.Errorf("%s: taken (%d entries)", name, len(raw))
		}
	}
}
