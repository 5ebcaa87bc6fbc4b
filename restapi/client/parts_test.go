package client

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// parts runs writeParts on paths and returns "name content-type" lines.
func parts(t *testing.T, hidden bool, paths ...string) ([]string, error) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := writeParts(mw, paths, hidden); err != nil {
		return nil, err
	}
	mr := multipart.NewReader(&buf, mw.Boundary())
	var out []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		_, params, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		body, _ := io.ReadAll(p)
		name, err := url.QueryUnescape(params["filename"])
		if err != nil {
			t.Fatalf("part name %q is not query-escaped: %v", params["filename"], err)
		}
		line := name + " " + p.Header.Get("Content-Type")
		if strings.HasSuffix(line, "symlink") {
			line += " -> " + string(body)
		}
		out = append(out, line)
	}
}

func TestWritePartsAsIpfsAdd(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for _, f := range []string{"a.txt", ".hidden", ".hd/x", "sub/b c+d%.txt"} {
		os.MkdirAll(filepath.Dir(filepath.Join(tree, f)), 0o755)
		if err := os.WriteFile(filepath.Join(tree, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(tree, "empty"), 0o755)
	if err := os.Symlink("a.txt", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := parts(t, false, tree)
	if err != nil {
		t.Fatal(err)
	}
	want := "tree application/x-directory|tree/a.txt application/octet-stream|tree/empty application/x-directory|tree/link application/symlink -> a.txt|" +
		"tree/sub application/x-directory|tree/sub/b c+d%.txt application/octet-stream"
	if strings.Join(got, "|") != want {
		t.Fatalf("parts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.ReplaceAll(want, "|", "\n"))
	}
	got, _ = parts(t, true, tree)
	if j := strings.Join(got, "|"); !strings.Contains(j, "tree/.hidden ") || !strings.Contains(j, "tree/.hd/x ") {
		t.Fatalf("with hidden files:\n%s", strings.Join(got, "\n"))
	}
	// A hidden name given as the argument itself is added, as ipfs add does.
	if got, _ := parts(t, false, filepath.Join(tree, ".hidden")); len(got) != 1 {
		t.Fatalf("an explicit hidden file: %v", got)
	}
	// Anything else (here a FIFO) is refused by name, not skipped.
	fifo := filepath.Join(tree, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	if _, err := parts(t, false, tree); err == nil || !strings.Contains(err.Error(), fifo) {
		t.Fatalf("a FIFO in the tree: %v", err)
	}
}
