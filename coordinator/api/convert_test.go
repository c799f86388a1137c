package api

import (
	"strings"
	"testing"

	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// What a client sends is judged as sent: a timeout too large to hold is
// over the limit, not negative, and an unknown kind is named by its
// number.
func TestSpecFromPBKeepsWhatWasSent(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		spec *pb.JobSpec
		want string
	}{
		"timeout overflow": {&pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Command: []string{"true"}, TimeoutSeconds: 9999999999999}, "is over the limit of"},
		"unknown kind":     {&pb.JobSpec{Kind: pb.JobKind(7), Command: []string{"true"}}, "job kind 7 unknown"},
	} {
		s := SpecFromPB(tc.spec)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
