package cli

import (
	"crypto/rand"
	"encoding/hex"
)

// Request holds the flag that names a submission. The coordinator queues
// one job per request id (for 7 days): a submission sent again with the
// same id, by the client after a lost answer or by a pipeline that runs
// the step again, gets that job back.
type Request struct {
	RequestID string `name:"request-id" help:"id of this submission: running the same command again with the same id gets the job the first run queued instead of a new one (e.g. Jenkins's build tag and stage name); default a new random id" placeholder:"ID" setting:"" envprefix:"KILN_"`
}

// id returns the request id to send: the flag's, or a new random one.
func (r Request) id() (string, error) {
	if r.RequestID != "" {
		return r.RequestID, nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", infra(err)
	}
	return hex.EncodeToString(b[:]), nil
}
