// Package config loads a peer's configuration: one JSON file with a section
// per component, then environment overrides named PINRING_<SECTION>_<KEY>.
// It is written once, generically, so components only declare plain structs
// with DefaultConfig and Validate.
package config

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// EnvPrefix starts every override variable.
const EnvPrefix = "PINRING"

// Duration is a time.Duration written as "10s" in JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes the duration as Go's duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses Go's duration syntax ("1m30s").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. 30s, 5m): %q", string(b))
	}
	*d = Duration(v)
	return nil
}

// FieldError names the key and value that failed.
type FieldError struct {
	Key   string // section.key as in the file
	Value string
	Err   error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("config %s (env %s) = %q: %v", e.Key, EnvName(e.Key), e.Value, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// Errf builds a FieldError.
func Errf(key string, value any, format string, args ...any) error {
	return &FieldError{Key: key, Value: fmt.Sprint(value), Err: fmt.Errorf(format, args...)}
}

// EnvName turns "api.listen" into "PINRING_API_LISTEN".
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// Load reads the JSON file at path into cfg (a pointer to a struct whose
// fields are sections). Keys absent from the file keep cfg's values, so
// callers pass a cfg filled with defaults. Unknown keys are an error.
func Load(path string, cfg any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// Save writes cfg as indented JSON, readable only by its owner.
func Save(path string, cfg any) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ApplyEnv sets every field of every section of cfg for which
// PINRING_<SECTION>_<KEY> is set in the environment given by lookup.
func ApplyEnv(cfg any, lookup func(string) (string, bool)) error {
	root := reflect.ValueOf(cfg)
	if root.Kind() != reflect.Pointer || root.Elem().Kind() != reflect.Struct {
		return errors.New("config.ApplyEnv: want a pointer to a struct")
	}
	var errs []error
	walk(root.Elem(), "", func(key string, v reflect.Value) {
		val, ok := lookup(EnvName(key))
		if !ok {
			return
		}
		if err := setFromString(v, val); err != nil {
			errs = append(errs, &FieldError{Key: key, Value: val, Err: err})
		}
	})
	return errors.Join(errs...)
}

// Keys lists every key of cfg with its current value rendered as JSON, in
// declaration order; the docs' configuration reference is checked against it.
func Keys(cfg any) [][2]string {
	var out [][2]string
	walk(reflect.ValueOf(cfg).Elem(), "", func(key string, v reflect.Value) {
		b, _ := json.Marshal(v.Interface())
		out = append(out, [2]string{key, string(b)})
	})
	return out
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func walk(v reflect.Value, prefix string, fn func(string, reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && !reflect.PointerTo(fv.Type()).Implements(textUnmarshaler) {
			walk(fv, key, fn)
			continue
		}
		fn(key, fv)
	}
}

func setFromString(v reflect.Value, s string) error {
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not a boolean (want true or false)")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v.OverflowInt(n) {
			return fmt.Errorf("not an integer")
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || v.OverflowUint(n) {
			return fmt.Errorf("not a non-negative integer")
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a number")
		}
		v.SetFloat(n)
	case reflect.Slice:
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		sl := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setFromString(sl.Index(i), p); err != nil {
				return fmt.Errorf("item %d: %w", i+1, err)
			}
		}
		v.Set(sl)
	case reflect.Map:
		// key=value,key=value
		m := reflect.MakeMap(v.Type())
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, val, ok := strings.Cut(p, "=")
			if !ok {
				return fmt.Errorf("want key=value pairs separated by commas")
			}
			m.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(val))
		}
		v.Set(m)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// ParseListen reads a TCP listen address written either as a multiaddr
// (/ip4/127.0.0.1/tcp/9094) or as host:port, and returns host:port.
func ParseListen(s string) (string, error) {
	if strings.HasPrefix(s, "/") {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return "", fmt.Errorf("not a multiaddr: %v", err)
		}
		na, err := manet.ToNetAddr(m)
		if err != nil {
			return "", fmt.Errorf("not a TCP address: %v", err)
		}
		if na.Network() != "tcp" && na.Network() != "tcp4" && na.Network() != "tcp6" {
			return "", fmt.Errorf("not a TCP address (network %s)", na.Network())
		}
		return na.String(), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("want a multiaddr like /ip4/127.0.0.1/tcp/9094 or host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("bad port %q", port)
	}
	return net.JoinHostPort(host, port), nil
}

// IsLoopback reports whether a host:port listens only on loopback.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
