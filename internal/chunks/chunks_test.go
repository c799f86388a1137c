package chunks

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, Size - 1, Size, Size + 1, 3*Size + 17} {
		data := bytes.Repeat([]byte("kiln"), size/4+1)[:size]
		var msgs [][]byte
		if err := Send(bytes.NewReader(data), func(b []byte) error {
			if len(b) > Size {
				t.Fatalf("chunk of %d bytes", len(b))
			}
			msgs = append(msgs, append([]byte(nil), b...))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		i := 0
		r := Reader(nil, func() ([]byte, error) {
			if i == len(msgs) {
				return nil, io.EOF
			}
			i++
			return msgs[i-1], nil
		})
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: got %d bytes, %v", size, len(got), err)
		}
	}
	boom := errors.New("stream broken")
	if err := Send(bytes.NewReader(make([]byte, 10)), func([]byte) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("send error lost: %v", err)
	}
}
