package restapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pinring/pinring/api"
)

// ParseAddParams reads the options of POST /add: the pin options of
// POST /pins plus ipfs add's (chunker, raw-leaves, cid-version, hash,
// layout, wrap-with-directory, no-pin, hidden, local) and erasure coding (erasure,
// data-shards, parity-shards; defaults 4 and 2).
func ParseAddParams(q map[string][]string, now time.Time) (api.AddParams, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	opts, err := ParsePinOptions(q, now)
	if err != nil {
		return api.AddParams{}, err
	}
	ap := api.AddParams{PinOptions: opts, Chunker: "size-262144", HashFun: "sha2-256", Layout: "balanced", DataShards: 4, ParityShards: 2}
	if v := get("chunker"); v != "" {
		ap.Chunker = v
	}
	if v := get("hash"); v != "" {
		ap.HashFun = v
	}
	if v := get("layout"); v != "" {
		ap.Layout = v
	}
	switch v := get("format"); v {
	case "", "unixfs":
	case "car":
		ap.Format = v
	default:
		return ap, fmt.Errorf("format %q: want unixfs (files) or car (one CAR file with one root)", v)
	}
	// Options of IPFS Cluster's add that Pinring does not have: refused,
	// never ignored.
	for _, k := range []string{"nocopy", "shard"} {
		if on, err := parseBool(get(k)); err != nil || on {
			return ap, fmt.Errorf("%s=%s: not supported (for shards on several peers, use erasure=true)", k, get(k))
		}
	}
	for _, n := range []struct {
		key string
		to  *int
	}{{"cid-version", &ap.CidVersion}, {"data-shards", &ap.DataShards}, {"parity-shards", &ap.ParityShards}} {
		if v := get(n.key); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i < 0 || i > 256 {
				return ap, fmt.Errorf("%s %q: want a small number", n.key, v)
			}
			*n.to = i
		}
	}
	rawSet := false
	for _, b := range []struct {
		key string
		to  *bool
	}{{"raw-leaves", &ap.RawLeaves}, {"wrap-with-directory", &ap.Wrap}, {"no-pin", &ap.NoPin}, {"erasure", &ap.Erasure}, {"hidden", &ap.Hidden}, {"local", &ap.Local}} {
		v := get(b.key)
		if v == "" {
			continue
		}
		x, err := parseBool(v)
		if err != nil {
			return ap, fmt.Errorf("%s: %v", b.key, err)
		}
		*b.to = x
		rawSet = rawSet || b.key == "raw-leaves"
	}
	if !rawSet && ap.CidVersion == 1 {
		ap.RawLeaves = true // as ipfs add does
	}
	return ap, nil
}

// add streams a multipart upload into the cluster, answering with one JSON
// object per added file and directory, the root last; an error after the
// first object goes in the X-Stream-Error trailer. With
// stream-channels=false (IPFS Cluster's option, which its JavaScript client
// sets) the objects are kept and sent as one JSON array once the add is
// done, and an error is an error status.
func (s *Server) add(w http.ResponseWriter, r *http.Request) {
	ap, err := ParseAddParams(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	stream := true
	if v := r.URL.Query().Get("stream-channels"); v != "" {
		if stream, err = parseBool(v); err != nil {
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
		if _, err := s.backend.Add(r.Context(), mr, ap, func(o api.AddedOutput) error {
			outs = append(outs, o)
			return nil
		}); err != nil {
			backendError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, outs)
		return
	}
	// Progress goes out while the upload still comes in: without full
	// duplex, HTTP/1.1 would cut the request body at the first flush.
	if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
		writeError(w, http.StatusInternalServerError, "streaming add: "+err.Error())
		return
	}
	started := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	_, err = s.backend.Add(r.Context(), mr, ap, func(o api.AddedOutput) error {
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
