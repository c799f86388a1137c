package rpm

import (
	"context"
	"errors"
)

// SignFile writes to dst a copy of the rpm at src with a new signature header
// signed by s. dst is written through a temporary file in its directory and
// renamed into place, so it is either absent, the old file, or complete.
// src and dst may be the same path.
func SignFile(ctx context.Context, s Signer, src, dst string) error {
	return errors.New("rpm.SignFile: not implemented")
}
