package shell

import (
	"testing"

	"github.com/kiln-build/kiln/worker/executor/executortest"
)

func TestExecutorContract(t *testing.T) {
	t.Parallel()
	executortest.Run(t, New(), nil)
}
