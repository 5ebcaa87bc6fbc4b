package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pinring/pinring/api"
)

// AddQuery encodes add parameters for POST /add.
func AddQuery(ap api.AddParams) url.Values {
	q := api.PinOptionsQuery(ap.PinOptions)
	q.Set("chunker", ap.Chunker)
	q.Set("hash", ap.HashFun)
	q.Set("layout", ap.Layout)
	q.Set("cid-version", strconv.Itoa(ap.CidVersion))
	q.Set("raw-leaves", strconv.FormatBool(ap.RawLeaves))
	if ap.Format != "" {
		q.Set("format", ap.Format)
	}
	if ap.Wrap {
		q.Set("wrap-with-directory", "true")
	}
	if ap.NoPin {
		q.Set("no-pin", "true")
	}
	if ap.Hidden {
		q.Set("hidden", "true")
	}
	if ap.Local {
		q.Set("local", "true")
	}
	if ap.Erasure {
		q.Set("erasure", "true")
		q.Set("data-shards", strconv.Itoa(ap.DataShards))
		q.Set("parity-shards", strconv.Itoa(ap.ParityShards))
	}
	return q
}

// Add uploads files and directories (recursively) and calls fn for each
// progress object; it returns the root CID. The upload streams: files are
// read as they are sent.
func (c *Client) Add(ctx context.Context, paths []string, ap api.AddParams, fn func(api.AddedOutput) error) (api.Cid, error) {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return api.Cid{}, err
		}
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(writeParts(mw, paths, ap.Hidden))
	}()
	base := c.base() // an upload streams from a pipe: one peer, no failover
	u := base + "/add?" + AddQuery(ap).Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, pr)
	if err != nil {
		return api.Cid{}, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	c.authorize(req)
	// An upload takes as long as it takes: no client timeout.
	resp, err := c.untimed().Do(req)
	if err != nil {
		pr.CloseWithError(err)
		return api.Cid{}, fmt.Errorf("cannot reach the peer at %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e = api.Error{Code: resp.StatusCode, Message: string(b)}
		}
		return api.Cid{}, e
	}
	dec := json.NewDecoder(resp.Body)
	var root api.Cid
	for {
		var o api.AddedOutput
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return root, fmt.Errorf("bad answer from POST /add: %w", err)
		}
		root = o.Cid // the last one reported is the root
		if err := fn(o); err != nil {
			return root, err
		}
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return root, errors.New(e)
	}
	if !root.Defined() {
		return root, errors.New("the add ended without a root CID")
	}
	return root, nil
}

// writeParts writes everything under paths as parts named by their path
// relative to the argument's parent (so "dir/a.txt" for "add dir"), as
// ipfs add does: directories (so that empty ones are kept), symbolic links
// (not followed) and files; names starting with "." below an argument are
// left out unless hidden is set.
func writeParts(mw *multipart.Writer, paths []string, hidden bool) error {
	for _, p := range paths {
		p = filepath.Clean(p)
		base := filepath.Dir(p)
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !hidden && path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			rel, err := filepath.Rel(base, path)
			if err != nil {
				return err
			}
			part := func(contentType string) (io.Writer, error) {
				h := make(textproto.MIMEHeader)
				h.Set("Content-Disposition", mime.FormatMediaType("form-data",
					map[string]string{"name": "file", "filename": url.QueryEscape(filepath.ToSlash(rel))})) // as boxo/files does
				h.Set("Content-Type", contentType)
				return mw.CreatePart(h)
			}
			switch t := d.Type(); {
			case t.IsDir():
				_, err := part("application/x-directory")
				return err
			case t&fs.ModeSymlink != 0:
				target, err := os.Readlink(path)
				if err != nil {
					return err
				}
				w, err := part("application/symlink")
				if err != nil {
					return err
				}
				_, err = io.WriteString(w, target)
				return err
			case !t.IsRegular():
				return fmt.Errorf("%s is not a file, a directory or a symbolic link", path)
			}
			w, err := part("application/octet-stream")
			if err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		})
		if err != nil {
			return err
		}
	}
	return mw.Close()
}

// ECGet streams the original bytes of an erasure-coded file into w.
func (c *Client) ECGet(ctx context.Context, ci api.Cid, w io.Writer) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/ec/"+ci.String(), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, err
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return n, errors.New(e)
	}
	return n, nil
}

// ECRepair rebuilds lost shards of one file (nil: all).
func (c *Client) ECRepair(ctx context.Context, ci *api.Cid) ([]api.ECRepair, error) {
	p := "/ec/repair"
	if ci != nil {
		p += "/" + ci.String()
	}
	var out []api.ECRepair
	return out, c.one(ctx, http.MethodPost, p, nil, &out)
}
