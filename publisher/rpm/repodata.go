package rpm

import (
	"context"
	"errors"
	"time"
)

// RepodataOptions tunes WriteRepodata.
type RepodataOptions struct {
	// Signer, when set, signs repomd.xml into repomd.xml.asc.
	Signer Signer
	// Revision is written to repomd.xml's <revision>; empty means the
	// timestamp in seconds.
	Revision string
	// Time is the timestamp written for every metadata file; zero means
	// time.Now().
	Time time.Time
}

// WriteRepodata writes dir/repodata for pkgs (see the package doc). The
// packages' Location fields are written as given; they must be relative
// paths below dir.
func WriteRepodata(ctx context.Context, dir string, pkgs []*Package, opts RepodataOptions) error {
	return errors.New("rpm.WriteRepodata: not implemented")
}
