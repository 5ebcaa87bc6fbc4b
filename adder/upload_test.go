package adder

import (
	"context"
	"errors"
	"iter"
	"strings"
	"testing"

	"github.com/pinring/pinring/api"
)

// entries makes an upload: a name ending in "/" is a directory.
func entries(names ...string) iter.Seq2[api.AddEntry, error] {
	return func(yield func(api.AddEntry, error) bool) {
		for _, n := range names {
			e := api.AddEntry{Path: strings.TrimSuffix(n, "/"), Kind: api.EntryFile, Body: strings.NewReader("hello world\n")}
			if strings.HasSuffix(n, "/") {
				e.Kind, e.Body = api.EntryDir, nil
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}

func TestUploadReportsEachEntryAndTheRootLast(t *testing.T) {
	ctx := context.Background()
	const hello = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o" // echo "hello world" | ipfs add
	for _, tc := range []struct {
		name     string
		upload   []string
		wrap     bool
		lines    []string // the names reported, in order
		rootName string
	}{
		{"one file", []string{"a.txt"}, false, []string{"a.txt"}, "a.txt"},
		{"one file wrapped", []string{"a.txt"}, true, []string{"a.txt", ""}, ""},
		{"a directory", []string{"d/", "d/a", "d/e/", "d/e/b"}, false, []string{"d/a", "d/e/b", "d/e", "d"}, "d"},
		{"two files", []string{"a", "b"}, false, []string{"a", "b", ""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []api.AddedOutput
			root, name, err := Upload(ctx, entries(tc.upload...), NewSink(ctx, &recorder{}), DefaultParams(), tc.wrap,
				func(o api.AddedOutput) error { got = append(got, o); return nil })
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range got {
				names = append(names, o.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.lines, ",") {
				t.Fatalf("reported %q, want %q", names, tc.lines)
			}
			if last := got[len(got)-1]; last.Cid != root || name != tc.rootName {
				t.Fatalf("root %s %q, last line %s %q, want the root last, named %q", root, name, last.Cid, last.Name, tc.rootName)
			}
			if got[0].Cid.String() != hello { // every file holds "hello world\n"
				t.Fatalf("%s is %s, want %s", got[0].Name, got[0].Cid, hello)
			}
		})
	}
}

func TestUploadRefusesWhatItCannotAdd(t *testing.T) {
	ctx := context.Background()
	none := func(api.AddedOutput) error { return nil }
	broken := errors.New("connection reset")
	failing := func(yield func(api.AddEntry, error) bool) { yield(api.AddEntry{}, broken) }
	if _, _, err := Upload(ctx, entries(), NewSink(ctx, &recorder{}), DefaultParams(), false, none); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("empty upload: %v, want a bad request", err)
	}
	if _, _, err := Upload(ctx, failing, NewSink(ctx, &recorder{}), DefaultParams(), false, none); !errors.Is(err, broken) {
		t.Fatalf("a failing upload: %v, want its error", err)
	}
	for name, up := range map[string][]string{"two CARs": {"a.car", "b.car"}, "a directory": {"d/"}, "nothing": nil} {
		if _, _, err := UploadCAR(ctx, entries(up...), NewSink(ctx, &recorder{}), none); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("CAR upload of %s: %v, want a bad request", name, err)
		}
	}
	if _, _, err := UploadCAR(ctx, entries("a.car"), NewSink(ctx, &recorder{}), none); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "a.car") {
		t.Fatalf("a file that is not a CAR: %v, want a bad request naming it", err)
	}
	// A path deeper than MaxPathDepth is refused before any directory is
	// made (a million levels overflowed the stack: a crash).
	deep := strings.Repeat("a/", MaxPathDepth) + "f"
	if _, _, err := Upload(ctx, entries(deep), NewSink(ctx, &recorder{}), DefaultParams(), false, none); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "deep") {
		t.Fatalf("a path %d directories deep: %v, want a bad request saying so", MaxPathDepth+1, err)
	}
}
