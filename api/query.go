package api

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ParsePinOptions reads IPFS Cluster's pin query parameters. Unset
// replication factors are 0, meaning "the cluster's default".
func ParsePinOptions(q url.Values, now time.Time) (PinOptions, error) {
	var o PinOptions
	var err error
	intParam := func(name string) (int, bool, error) {
		v := q.Get(name)
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, false, fmt.Errorf("parameter %s=%q: not an integer", name, v)
		}
		return n, true, nil
	}
	if n, ok, err := intParam("replication"); err != nil {
		return o, err
	} else if ok {
		o.ReplicationFactorMin, o.ReplicationFactorMax = n, n
	}
	if n, ok, err := intParam("replication-min"); err != nil {
		return o, err
	} else if ok {
		o.ReplicationFactorMin = n
	}
	if n, ok, err := intParam("replication-max"); err != nil {
		return o, err
	} else if ok {
		o.ReplicationFactorMax = n
	}
	for _, rf := range []int{o.ReplicationFactorMin, o.ReplicationFactorMax} {
		if rf < -1 {
			return o, fmt.Errorf("replication factor %d: want -1 (everywhere) or a positive number", rf)
		}
	}
	o.Name = q.Get("name")
	if o.Mode, err = ParsePinMode(q.Get("mode")); err != nil {
		return o, err
	}
	if v := q.Get("shard-size"); v != "" {
		if o.ShardSize, err = strconv.ParseUint(v, 10, 64); err != nil {
			return o, fmt.Errorf("parameter shard-size=%q: not a non-negative integer", v)
		}
	}
	if o.UserAllocations, err = ParsePeers(q.Get("user-allocations")); err != nil {
		return o, fmt.Errorf("parameter user-allocations: %w", err)
	}
	if v := q.Get("expire-at"); v != "" {
		if o.ExpireAt, err = time.Parse(time.RFC3339, v); err != nil {
			return o, fmt.Errorf("parameter expire-at=%q: want an RFC 3339 time like 2030-01-02T15:04:05Z", v)
		}
	}
	if v := q.Get("expire-in"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("parameter expire-in=%q: want a positive duration like 24h", v)
		}
		o.ExpireAt = now.Add(d).UTC()
	}
	if o.Origins, err = ParseOrigins(q.Get("origins")); err != nil {
		return o, fmt.Errorf("parameter origins: %w", err)
	}
	if v := q.Get("pin-update"); v != "" {
		if o.PinUpdate, err = ParseCid(v); err != nil {
			return o, fmt.Errorf("parameter pin-update: %w", err)
		}
	}
	for k, vs := range q {
		if key, ok := strings.CutPrefix(k, "meta-"); ok {
			if key == "" {
				return o, fmt.Errorf("parameter %q: empty metadata key", k)
			}
			if o.Metadata == nil {
				o.Metadata = map[string]string{}
			}
			o.Metadata[key] = vs[0]
		}
	}
	return o, nil
}

// PinOptionsQuery is the inverse of ParsePinOptions, for clients.
func PinOptionsQuery(o PinOptions) url.Values {
	q := url.Values{}
	if o.ReplicationFactorMin != 0 {
		q.Set("replication-min", strconv.Itoa(o.ReplicationFactorMin))
	}
	if o.ReplicationFactorMax != 0 {
		q.Set("replication-max", strconv.Itoa(o.ReplicationFactorMax))
	}
	if o.Name != "" {
		q.Set("name", o.Name)
	}
	if o.Mode != PinModeRecursive {
		q.Set("mode", o.Mode.String())
	}
	if o.ShardSize > 0 {
		q.Set("shard-size", strconv.FormatUint(o.ShardSize, 10))
	}
	if len(o.UserAllocations) > 0 {
		s := make([]string, len(o.UserAllocations))
		for i, p := range o.UserAllocations {
			s[i] = p.String()
		}
		q.Set("user-allocations", strings.Join(s, ","))
	}
	if !o.ExpireAt.IsZero() {
		q.Set("expire-at", o.ExpireAt.Format(time.RFC3339))
	}
	if len(o.Origins) > 0 {
		s := make([]string, len(o.Origins))
		for i, m := range o.Origins {
			s[i] = m.String()
		}
		q.Set("origins", strings.Join(s, ","))
	}
	if o.PinUpdate.Defined() {
		q.Set("pin-update", o.PinUpdate.String())
	}
	for k, v := range o.Metadata {
		q.Set("meta-"+k, v)
	}
	return q
}

// ParseAddParams reads the options of POST /add: the pin options of
// POST /pins plus ipfs add's (chunker, raw-leaves, cid-version, hash,
// layout, wrap-with-directory, no-pin, hidden, local) and erasure coding (erasure,
// data-shards, parity-shards; defaults 4 and 2).
func ParseAddParams(q map[string][]string, now time.Time) (AddParams, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	opts, err := ParsePinOptions(q, now)
	if err != nil {
		return AddParams{}, err
	}
	ap := AddParams{PinOptions: opts, Chunker: "size-262144", HashFun: "sha2-256", Layout: "balanced", DataShards: 4, ParityShards: 2}
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
		if on, err := ParseBool(get(k)); err != nil || on {
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
		x, err := ParseBool(v)
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

// ParseBool reads a boolean query parameter as IPFS Cluster's API takes
// it: true/1/yes, false/0/no, or empty for false.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "", "false", "0", "no":
		return false, nil
	case "true", "1", "yes":
		return true, nil
	}
	return false, fmt.Errorf("%q: want true or false", s)
}
