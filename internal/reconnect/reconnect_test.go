package reconnect

import (
	"testing"
	"time"
)

func TestDelaysStayWithinMaxDelay(t *testing.T) {
	t.Parallel()
	p := ConnectParams()
	if worst := time.Duration(float64(p.Backoff.MaxDelay) * (1 + p.Backoff.Jitter)); worst > MaxDelay {
		t.Errorf("gRPC reconnect delay up to %s, over %s", worst, MaxDelay)
	}
	if p.MinConnectTimeout <= 0 || p.MinConnectTimeout+2*MaxDelay > Within {
		t.Errorf("connect timeout %s and two delays of %s exceed Within %s", p.MinConnectTimeout, MaxDelay, Within)
	}
	d := 100 * time.Millisecond
	for i := 0; i < 50; i++ {
		d = Next(d)
		if d > MaxDelay || d <= 0 {
			t.Fatalf("retry %d waits %s, want (0, %s]", i, d, MaxDelay)
		}
	}
	if d != MaxDelay {
		t.Errorf("retries settle at %s, want %s", d, MaxDelay)
	}
}
