package restapi

import (
	"fmt"
	"io"
	"mime/multipart"
	"strings"
	"testing"

	"github.com/ipfs/boxo/files"

	"github.com/pinring/pinring/api"
)

// Parts as kubo's CLI and IPFS Cluster's client write them (boxo/files:
// query-escaped names, directory and symlink parts) are read back as
// entries with their real names, kinds and bodies.
func TestMultipartEntriesFromBoxoClients(t *testing.T) {
	tree := files.NewMapDirectory(map[string]files.Node{
		"dir": files.NewMapDirectory(map[string]files.Node{
			"a b+c%.txt": files.NewBytesFile([]byte("x")),
			"link":       files.NewLinkFile("a b+c%.txt", nil),
			"empty":      files.NewMapDirectory(nil),
		}),
	})
	mfr := files.NewMultiFileReader(tree, true, false)
	var got []string
	for e, err := range MultipartEntries(multipart.NewReader(mfr, mfr.Boundary())) {
		if err != nil {
			t.Fatal(err)
		}
		body := ""
		if e.Body != nil {
			b, _ := io.ReadAll(e.Body)
			body = string(b)
		}
		got = append(got, fmt.Sprintf("%s %d %q", e.Path, e.Kind, body))
	}
	want := []string{
		fmt.Sprintf("dir %d \"\"", api.EntryDir),
		fmt.Sprintf("dir/a b+c%%.txt %d \"x\"", api.EntryFile),
		fmt.Sprintf("dir/empty %d \"\"", api.EntryDir),
		fmt.Sprintf("dir/link %d \"a b+c%%.txt\"", api.EntrySymlink),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("entries read as:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A cut-off upload fails, as the entry's body or as the next entry.
	cut := "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc"
	for e, err := range MultipartEntries(multipart.NewReader(strings.NewReader(cut), "b")) {
		if err == nil {
			_, err = io.ReadAll(e.Body)
		}
		if err != nil {
			return
		}
	}
	t.Fatal("a cut-off upload ended without an error")
}
