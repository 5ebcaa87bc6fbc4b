package ipfsproxy

import (
	"net/url"
	"testing"
)

// FuzzParseArgs: an RPC query either parses (within the bounds asked for,
// with no empty argument) or is refused — never a panic.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"arg=QmSSAsUXhn66gztCB3vSPWjRaZYbMxpjSKgAoLFUYSSuCZ&recursive=true&progress=true",
		"arg=a&arg=b&unpin=false", "arg=&stream=yes", "type=all&stream=true", "recursive=maybe",
	} {
		f.Add(s, 0, 2)
	}
	f.Fuzz(func(t *testing.T, raw string, min, max int) {
		q, err := url.ParseQuery(raw)
		if err != nil || min < 0 || min > 8 || max > 8 {
			return
		}
		a, err := ParseArgs(q, min, max)
		if err != nil {
			return
		}
		if len(a.Args) < min || max >= 0 && len(a.Args) > max {
			t.Fatalf("%q: %d args outside [%d, %d]", raw, len(a.Args), min, max)
		}
		for _, s := range a.Args {
			if s == "" {
				t.Fatalf("%q: an empty argument passed", raw)
			}
		}
		for _, name := range []string{"recursive", "stream", "unpin", "progress"} {
			a.Bool(name, true)
		}
	})
}
