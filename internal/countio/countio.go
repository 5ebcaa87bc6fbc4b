// Package countio counts the bytes that pass through a reader.
package countio

import (
	"io"
	"sync/atomic"
)

// Reader counts in Count the bytes read through R; Count may be read while
// another goroutine reads.
type Reader struct {
	R     io.Reader
	Count atomic.Int64
}

func (c *Reader) Read(b []byte) (int, error) {
	n, err := c.R.Read(b)
	c.Count.Add(int64(n))
	return n, err
}
