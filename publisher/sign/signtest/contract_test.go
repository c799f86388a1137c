package signtest_test

import (
	"testing"

	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

func TestFakeKeepsSignerContract(t *testing.T) {
	t.Parallel()
	signtest.Contract(t, signtest.Fake{}, signtest.FakeVerifier)
}
