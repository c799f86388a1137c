// Package chunks moves files over gRPC streams: a reader cut into messages
// on one side, messages joined back into a reader on the other.
package chunks

import (
	"errors"
	"io"
)

// Size is the chunk size used for artifacts.
const Size = 256 << 10

// Send reads r to the end and calls send with each chunk. The slice passed
// to send is reused: send must not keep it.
func Send(r io.Reader, send func([]byte) error) error {
	buf := make([]byte, Size)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if serr := send(buf[:n]); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Reader joins the chunks that next returns (after first) into a reader;
// next returns io.EOF at the end of the stream.
func Reader(first []byte, next func() ([]byte, error)) io.Reader {
	return &reader{buf: first, next: next}
}

type reader struct {
	buf  []byte
	next func() ([]byte, error)
}

func (c *reader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		b, err := c.next()
		if err != nil {
			return 0, err
		}
		c.buf = b
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}
