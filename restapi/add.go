package restapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/pinring/pinring/api"
)

// add streams a multipart upload into the cluster, answering with one JSON
// object per added file and directory, the root last; an error after the
// first object goes in the X-Stream-Error trailer. With
// stream-channels=false (IPFS Cluster's option, which its JavaScript client
// sets) the objects are kept and sent as one JSON array once the add is
// done, and an error is an error status.
func (s *Server) add(w http.ResponseWriter, r *http.Request) {
	ap, err := api.ParseAddParams(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	stream := true
	if v := r.URL.Query().Get("stream-channels"); v != "" {
		if stream, err = api.ParseBool(v); err != nil {
			writeError(w, http.StatusBadRequest, "stream-channels: "+err.Error())
			return
		}
	}
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "POST /add wants a multipart/form-data body: "+err.Error())
		return
	}
	if !stream {
		outs := []api.AddedOutput{}
		if _, err := s.backend.Add(r.Context(), MultipartEntries(mr), ap, func(o api.AddedOutput) error {
			outs = append(outs, o)
			return nil
		}); err != nil {
			backendError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, outs)
		return
	}
	started := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	_, err = s.backend.Add(r.Context(), MultipartEntries(mr), ap, func(o api.AddedOutput) error {
		if !started {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Trailer", "X-Stream-Error")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if err := enc.Encode(o); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil {
		if !started {
			backendError(w, err)
			return
		}
		w.Header().Set("X-Stream-Error", strings.ReplaceAll(err.Error(), "\n", " "))
	}
}

// ecGet streams the original bytes of an erasure-coded file.
func (s *Server) ecGet(w http.ResponseWriter, r *http.Request) {
	c, ok := parseCidParam(w, r.PathValue("cid"))
	if !ok {
		return
	}
	hw := &headerOnFirstWrite{ResponseWriter: w}
	if err := s.backend.ECGet(r.Context(), c, hw); err != nil {
		if !hw.started {
			backendError(w, err)
			return
		}
		w.Header().Set("X-Stream-Error", err.Error())
	}
}

// headerOnFirstWrite sends the octet-stream header (and the trailer
// declaration) with the first byte, so that an early error can still be a
// JSON error.
type headerOnFirstWrite struct {
	http.ResponseWriter
	started bool
}

func (h *headerOnFirstWrite) Write(b []byte) (int, error) {
	if !h.started {
		h.Header().Set("Content-Type", "application/octet-stream")
		h.Header().Set("Trailer", "X-Stream-Error")
		h.WriteHeader(http.StatusOK)
		h.started = true
	}
	return h.ResponseWriter.Write(b)
}

// ecRepair rebuilds lost shards of one file, or of every file.
func (s *Server) ecRepair(w http.ResponseWriter, r *http.Request) {
	var only *api.Cid
	if arg := r.PathValue("cid"); arg != "" {
		c, ok := parseCidParam(w, arg)
		if !ok {
			return
		}
		only = &c
	}
	res, err := s.backend.ECRepair(r.Context(), only)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(res))
}

// MultipartEntries reads a multipart upload as kubo's clients, IPFS
// Cluster's and Pinring's send it: every part with a file name is an
// entry, its path the name's (query-unescaped, slash-separated); a part of
// type application/x-directory is a directory, one of type
// application/symlink a symbolic link whose body is its target, anything
// else a file. A part's body is valid until the next entry is asked for.
// Reading errors are api.ErrBadRequest.
func MultipartEntries(mr *multipart.Reader) iter.Seq2[api.AddEntry, error] {
	return func(yield func(api.AddEntry, error) bool) {
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(api.AddEntry{}, fmt.Errorf("%w: reading the upload: %v", api.ErrBadRequest, err))
				return
			}
			name := partPath(part)
			if name == "" {
				part.Close()
				continue // not a file
			}
			e := api.AddEntry{Path: name, Kind: api.EntryFile, Body: part}
			switch ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type")); ct {
			case "application/x-directory":
				e.Kind, e.Body = api.EntryDir, nil
			case "application/symlink":
				e.Kind = api.EntrySymlink
			}
			more := yield(e, nil)
			part.Close()
			if !more {
				return
			}
		}
	}
}

// partPath is a part's file name with its directories (Part.FileName
// keeps only the base name); "" for a part that is not a file.
func partPath(part *multipart.Part) string {
	_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil {
		return ""
	}
	name := params["filename"]
	// Kubo's clients and IPFS Cluster's (boxo/files) query-escape the
	// name; so does Pinring's. A name that does not unescape is taken as
	// it is, as boxo does.
	if u, err := url.QueryUnescape(name); err == nil {
		name = u
	}
	if name == "" {
		return ""
	}
	return path.Clean("/" + strings.ReplaceAll(name, "\\", "/"))[1:]
}
