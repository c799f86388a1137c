package rpm

import (
	"context"
	"errors"
)

// Signature header tags.
const (
	sigTagSize            = 1000
	sigTagPGP             = 1002
	sigTagMD5             = 1004
	sigTagGPG             = 1005
	sigTagPayloadSize     = 1007
	sigTagReservedSpace   = 1008
	sigTagDSA             = 267
	sigTagRSA             = 268
	sigTagSHA1            = 269
	sigTagLongSize        = 270
	sigTagLongArchiveSize = 271
	sigTagSHA256          = 273
)

// SignFile writes to dst a copy of the rpm at src with a new signature header
// signed by s. dst is written through a temporary file in its directory and
// renamed into place, so it is either absent, the old file, or complete.
// src and dst may be the same path.
func SignFile(ctx context.Context, s Signer, src, dst string) error {
	return errors.New("rpm.SignFile: not implemented")
}
