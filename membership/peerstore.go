package membership

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Remembered reads the addresses Remember wrote to path (none when there
// is no file; bad lines are skipped).
func Remembered(path string) []ma.Multiaddr {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []ma.Multiaddr
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		a, err := ma.NewMultiaddr(line)
		if err != nil {
			continue
		}
		if _, err := peer.AddrInfoFromP2pAddr(a); err != nil {
			continue
		}
		out = append(out, a)
	}
	return out
}

// Remember writes to path the addresses of the most members seen last, most
// recently seen first, one /p2p multiaddr a line, unless the file already
// holds them. A restarted peer reads them with Remembered.
func (t *Table) Remember(path string, most int) error {
	type seen struct {
		at    time.Time
		addrs []ma.Multiaddr
	}
	var all []seen
	for _, e := range t.Entries() {
		if t.member(e.ID.ID, e.Writer) { // a stranger's addresses are not dialled at every start
			all = append(all, seen{e.LastSeen, e.ID.Addresses})
		}
	}
	slices.SortFunc(all, func(a, b seen) int { return b.at.Compare(a.at) })
	if len(all) > most {
		all = all[:most]
	}
	var buf strings.Builder
	buf.WriteString("# cluster peers seen; written by cluster-peer, read at start\n")
	for _, s := range all {
		for _, a := range s.addrs {
			buf.WriteString(a.String())
			buf.WriteByte('\n')
		}
	}
	if old, err := os.ReadFile(path); err == nil && string(old) == buf.String() {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(buf.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
