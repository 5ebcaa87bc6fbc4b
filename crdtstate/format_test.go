package crdtstate

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fixtureNS = "/pinring/fixture/state"

// TestWriteFormat1Fixture regenerates testdata/format1 (a Badger store as
// format 1 wrote it: pins, no version key) when PINRING_WRITE_FIXTURE is
// set. It is kept in the repository; do not regenerate it casually.
func TestWriteFormat1Fixture(t *testing.T) {
	if os.Getenv("PINRING_WRITE_FIXTURE") == "" {
		t.Skip("set PINRING_WRITE_FIXTURE=1 to regenerate testdata/format1")
	}
	dir := filepath.Join("testdata", "format1")
	os.RemoveAll(dir)
	store, err := OpenBadger(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := New(ctx, DefaultConfig(), Deps{Store: store, Namespace: fixtureNS, JournalDir: JournalDir(dir, fixtureNS)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p := testPin(t, i)
		p.Name = "fixture"
		if err := st.Add(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	store.Delete(ctx, formatKey(fixtureNS)) // format 1 had no version key
	store.Close()
}

func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := os.Create(filepath.Join(to, d.Name()))
		if err != nil {
			return err
		}
		defer dst.Close()
		_, err = io.Copy(dst, src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// A store written by format 1 opens, is migrated to the current format,
// and keeps its pins.
func TestMigrateFromFormat1Fixture(t *testing.T) {
	ctx := context.Background()
	dir := copyDir(t, filepath.Join("testdata", "format1"))
	store, err := OpenBadger(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if v, err := diskFormat(ctx, store, fixtureNS); err != nil || v != 1 {
		t.Fatalf("the fixture reads as format %d (%v), want 1", v, err)
	}
	st, err := New(ctx, DefaultConfig(), Deps{Store: store, Namespace: fixtureNS, JournalDir: JournalDir(dir, fixtureNS)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, _ := diskFormat(ctx, store, fixtureNS); v != DiskFormat {
		t.Fatalf("after opening: format %d, want %d", v, DiskFormat)
	}
	d, err := st.Digest(ctx)
	if err != nil || d.Pins != 3 {
		t.Fatalf("migrated pinset: %+v %v", d, err)
	}
	p, err := st.Get(ctx, testPin(t, 1).Cid)
	if err != nil || p.Name != "fixture" {
		t.Fatalf("a migrated pin: %+v %v", p, err)
	}
}

// A store from a newer Pinring is refused with a message that says what
// to do, and left untouched.
func TestNewerFormatIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := OpenBadger(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	store.Put(ctx, formatKey("/pinring/x/state"), []byte("99"))
	_, err = New(ctx, DefaultConfig(), Deps{Store: store, Namespace: "/pinring/x/state", JournalDir: JournalDir(dir, "/pinring/x/state")})
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), "upgrade Pinring") {
		t.Fatalf("format 99: %v", err)
	}
	if v, _ := store.Get(ctx, formatKey("/pinring/x/state")); string(v) != "99" {
		t.Fatalf("the refused store was changed: %q", v)
	}
}
