package crdtstate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

func exportLines(t *testing.T, pins ...api.Pin) string {
	t.Helper()
	var b bytes.Buffer
	for _, p := range pins {
		if err := json.NewEncoder(&b).Encode(p); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func offlinePin(i int) api.Pin {
	return api.Pin{Cid: testkit.Cid(i), Type: api.DataType, MaxDepth: -1,
		PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1}}
}

// A stopped peer's pinset takes an import (by its write key), keeps it
// across a reopen, exports it, stops at a bad line keeping what came before,
// and refuses while the datastore is in use or without a write key.
func TestOfflineImportExport(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "datastore")
	if _, err := OpenOffline(ctx, DefaultConfig(), path, "c", "w1", "", false); err == nil || !strings.Contains(err.Error(), "no pinset") {
		t.Fatalf("opening a missing pinset: %v", err)
	}
	o, err := OpenOffline(ctx, DefaultConfig(), path, "c", "w1", "", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOffline(ctx, DefaultConfig(), path, "c", "w1", "", false); !errors.Is(err, ErrPeerRunning) {
		o.Close()
		t.Fatalf("opening it twice: %v, want ErrPeerRunning", err)
	}
	n, err := o.Import(ctx, strings.NewReader(exportLines(t, offlinePin(1), offlinePin(2))+"{not json\n"+exportLines(t, offlinePin(3))), nil)
	if err == nil || n != 2 || !strings.Contains(err.Error(), "pin 3 of the import") {
		o.Close()
		t.Fatalf("import with a bad third line: %d, %v", n, err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o, err = OpenOffline(ctx, DefaultConfig(), path, "c", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := o.Import(ctx, strings.NewReader(exportLines(t, offlinePin(4))), nil); err == nil || !strings.Contains(err.Error(), "write key") {
		t.Fatalf("import without a write key: %v", err)
	}
	var out bytes.Buffer
	if n, err := o.Export(ctx, &out, nil); err != nil || n != 2 {
		t.Fatalf("export after reopening: %d pins, %v; want the 2 before the bad line", n, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var p api.Pin
		if err := json.Unmarshal([]byte(line), &p); err != nil || p.Writer != "w1" {
			t.Fatalf("exported %q (%v), want a pin written by w1", line, err)
		}
	}
}
