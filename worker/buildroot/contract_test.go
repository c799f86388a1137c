package buildroot_test

import (
	"testing"

	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
	"github.com/kiln-build/kiln/worker/executor/executortest"
)

func TestExecutorContract(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	executortest.RunKnown(t, b, func(j *executor.Job) {
		j.Labels = map[string]string{"target": target}
	}, map[string]string{
		// runc's "no such file" comes back as an infrastructure error, so
		// the coordinator would retry a job whose command does not exist.
		"MissingCommand": "a command missing in the chroot is an error, not a failed job (exit 127)",
	})
}
