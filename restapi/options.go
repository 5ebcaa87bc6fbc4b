package restapi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pinring/pinring/api"
)

// ParsePinOptions reads IPFS Cluster's pin query parameters. Unset
// replication factors are 0, meaning "the cluster's default".
func ParsePinOptions(q url.Values, now time.Time) (api.PinOptions, error) {
	var o api.PinOptions
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
	if o.Mode, err = api.ParsePinMode(q.Get("mode")); err != nil {
		return o, err
	}
	if v := q.Get("shard-size"); v != "" {
		if o.ShardSize, err = strconv.ParseUint(v, 10, 64); err != nil {
			return o, fmt.Errorf("parameter shard-size=%q: not a non-negative integer", v)
		}
	}
	if o.UserAllocations, err = api.ParsePeers(q.Get("user-allocations")); err != nil {
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
	if o.Origins, err = api.ParseOrigins(q.Get("origins")); err != nil {
		return o, fmt.Errorf("parameter origins: %w", err)
	}
	if v := q.Get("pin-update"); v != "" {
		if o.PinUpdate, err = api.ParseCid(v); err != nil {
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
func PinOptionsQuery(o api.PinOptions) url.Values {
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
	if o.Mode != api.PinModeRecursive {
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
