// Package frame reads and writes length-prefixed byte strings
// ([uvarint length][bytes]), the framing of Pinring's stream protocols.
package frame

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Write writes one frame.
func Write(w io.Writer, b []byte) error {
	if err := WriteUvarint(w, uint64(len(b))); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// WriteUvarint writes a bare uvarint.
func WriteUvarint(w io.Writer, v uint64) error {
	var buf [binary.MaxVarintLen64]byte
	_, err := w.Write(buf[:binary.PutUvarint(buf[:], v)])
	return err
}

// Read reads one frame of at most limit bytes. A stream that ends inside a
// frame gives io.ErrUnexpectedEOF; io.EOF means it ended between frames.
func Read(r *bufio.Reader, limit uint64) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("a frame of %d bytes is over the limit of %d", n, limit)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}
