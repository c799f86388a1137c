package publish

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/coordinator/job"
)

func TestRepositoryAndWants(t *testing.T) {
	t.Parallel()
	p := &Publisher{cfg: Config{Repository: "{release}-{target}", Repositories: map[string]string{"mos-9.0/centos7": "mos9-el7"}}}
	if r := p.Repository(&job.Build{Release: "mos-9.0", Target: "bookworm"}); r != "mos-9.0-bookworm" {
		t.Errorf("pattern: %s", r)
	}
	if r := p.Repository(&job.Build{Release: "mos-9.0", Target: "centos7"}); r != "mos9-el7" {
		t.Errorf("override: %s", r)
	}
	b := &job.Build{Publish: true}
	cases := []struct {
		j    *job.Job
		want bool
	}{
		{&job.Job{State: job.Succeeded, Spec: job.Spec{Build: b}}, true},
		{&job.Job{State: job.Failed, Spec: job.Spec{Build: b}}, false},
		{&job.Job{State: job.Succeeded, Spec: job.Spec{Build: &job.Build{}}}, false},
		{&job.Job{State: job.Succeeded, Spec: job.Spec{Build: b}, Verify: true}, false},
		{&job.Job{State: job.Succeeded}, false},
	}
	for i, c := range cases {
		if Wants(c.j) != c.want {
			t.Errorf("case %d: %v", i, !c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for cfg, want := range map[*Config]string{
		{}:                                    "address is empty",
		{Address: "10.0.0.1:7430", Dev: true}: "loopback only",
		{Address: "pub:7430"}:                 "tls.cert",
	} {
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", cfg, err, want)
		}
	}
	if err := (&Config{Address: "127.0.0.1:7430", Dev: true}).Validate(); err != nil {
		t.Error(err)
	}
}
