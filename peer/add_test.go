package peer

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"

	"github.com/ipfs/boxo/files"
)

// Parts as kubo's CLI and IPFS Cluster's client write them (boxo/files:
// query-escaped names, directory and symlink parts) are read back with
// their real names.
func TestPartsFromBoxoClients(t *testing.T) {
	tree := files.NewMapDirectory(map[string]files.Node{
		"dir": files.NewMapDirectory(map[string]files.Node{
			"a b+c%.txt": files.NewBytesFile([]byte("x")),
			"link":       files.NewLinkFile("a b+c%.txt", nil),
			"empty":      files.NewMapDirectory(nil),
		}),
	})
	mfr := files.NewMultiFileReader(tree, true, false)
	mr := multipart.NewReader(mfr, mfr.Boundary())
	var got []string
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		got = append(got, partPath(part)+" "+ct)
		part.Close()
	}
	want := "dir application/x-directory|dir/a b+c%.txt application/octet-stream|" +
		"dir/empty application/x-directory|dir/link application/symlink"
	if strings.Join(got, "|") != want {
		t.Fatalf("parts read as:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.ReplaceAll(want, "|", "\n"))
	}
}
