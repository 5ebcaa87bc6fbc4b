package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/audit"
	"github.com/pinring/pinring/internal/frame"
)

// An audit stream: the auditor's writer proof, then [frame root CID]
// [frame nonce]; the answer is [frame error] — empty when the prover
// answers — then [uvarint n] and n × [frame block], the path from the root
// down (audit.Prove).

// ServeAudit answers audits on h: a proven writer's challenge gets the
// path prove finds (which must read this peer's blockstore only); anyone
// else's is refused.
func ServeAudit(ctx context.Context, h host.Host, proof WriterProof, prove func(context.Context, audit.Challenge) ([][]byte, error)) {
	Serve(h, Audit, proof.Known, func(s network.Stream) {
		defer s.Close()
		from := s.Conn().RemotePeer()
		s.SetReadDeadline(time.Now().Add(Audit.Idle))
		r := bufio.NewReader(s)
		answer := func(reason string, blocks [][]byte) {
			w := bufio.NewWriter(s)
			s.SetWriteDeadline(time.Now().Add(Audit.Idle))
			if frame.Write(w, []byte(reason)) != nil || frame.WriteUvarint(w, uint64(len(blocks))) != nil {
				s.Reset()
				return
			}
			for _, b := range blocks {
				if frame.Write(w, b) != nil {
					s.Reset()
					return
				}
			}
			if w.Flush() != nil {
				s.Reset()
			}
		}
		if err := proof.Check(r, from); err != nil {
			answer(fmt.Sprintf("refused: only writers audit, and %s %s", from, err), nil)
			return
		}
		ch, err := readChallenge(r)
		if err != nil {
			s.Reset()
			return
		}
		pctx, cancel := context.WithTimeout(ctx, Audit.Deadline)
		blocks, err := prove(pctx, ch)
		cancel()
		if err != nil {
			answer(err.Error(), nil)
			return
		}
		answer("", blocks)
	}, nil)
}

func readChallenge(r *bufio.Reader) (audit.Challenge, error) {
	var ch audit.Challenge
	rb, err := frame.Read(r, 128)
	if err != nil {
		return ch, err
	}
	if ch.Root, err = cid.Cast(rb); err != nil {
		return ch, err
	}
	nb, err := frame.Read(r, audit.NonceSize)
	if err != nil {
		return ch, err
	}
	if len(nb) != audit.NonceSize {
		return ch, errors.New("bad nonce")
	}
	copy(ch.Nonce[:], nb)
	return ch, nil
}

// AuditResult is one challenge's outcome, as the auditor saw it.
type AuditResult = audit.Outcome

// AskAudit challenges pid, already connected, with ch, proving this peer
// is a writer, and verifies the answer (audit.Verify) against deadline.
func AskAudit(ctx context.Context, h host.Host, proof WriterProof, pid peer.ID, ch audit.Challenge, deadline time.Duration) AuditResult {
	var res AuditResult
	sent := time.Now()
	s, done, err := request(ctx, h, pid, Audit, func(w0 io.Writer) error {
		w := bufio.NewWriter(w0)
		if err := proof.Write(w); err != nil {
			return err
		}
		if err := frame.Write(w, ch.Root.Bytes()); err != nil {
			return err
		}
		if err := frame.Write(w, ch.Nonce[:]); err != nil {
			return err
		}
		return w.Flush()
	})
	if err != nil {
		res.Err = fmt.Errorf("asking %s: %w: %w", pid, audit.ErrNoAnswer, err)
		return res
	}
	defer done()
	defer s.Close()
	r := bufio.NewReader(s)
	s.SetReadDeadline(time.Now().Add(deadline))
	reason, err := frame.Read(r, 4096)
	if err != nil {
		res.Err = fmt.Errorf("%s did not answer: %w: %w", pid, audit.ErrNoAnswer, err)
		return res
	}
	// The reason is the prover's text: it reaches logs and terminals
	// printable only.
	said := printable(reason)
	if rest, ok := strings.CutPrefix(said, audit.ErrFetching.Error()); ok {
		res.Err = fmt.Errorf("%s could not prove it holds %s: %w%s", pid, ch.Root, audit.ErrFetching, rest)
		return res
	}
	if said != "" {
		res.Err = fmt.Errorf("%s could not prove it holds %s: %s", pid, ch.Root, said)
		return res
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > audit.MaxDepth {
		res.Err = fmt.Errorf("%s sent a bad answer (%d blocks, %v)", pid, n, err)
		return res
	}
	blocks := make([][]byte, 0, n)
	for range n {
		b, err := frame.Read(r, audit.MaxBlock)
		if err != nil {
			res.Err = fmt.Errorf("%s's answer broke off: %w: %w", pid, audit.ErrNoAnswer, err)
			return res
		}
		blocks = append(blocks, b)
		res.Bytes += len(b)
	}
	answered := time.Now()
	res.Blocks, res.Took = len(blocks), answered.Sub(sent)
	res.Err = audit.Verify(ch, blocks, sent, answered, deadline)
	return res
}

// printable is b as valid UTF-8 with control characters replaced.
func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(string(b), "?"))
}
