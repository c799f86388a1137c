package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// followOpts says how a job is followed.
type followOpts struct {
	asJSON bool
	// quiet follows to the end without printing the log: a reused job's
	// log is one `jobs logs ID` away.
	quiet bool
}

// followFor is follow that gives up after d (none when d is 0): a job that
// cannot start (a target no worker serves) or a publish that does not land
// ends the wait with exit 3 and says why it waits; the job stays as it is.
func followFor(ctx context.Context, cl pb.CoordinatorServiceClient, id string, d time.Duration, opts followOpts, o IO) error {
	if d <= 0 {
		return follow(ctx, cl, id, opts, o)
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := follow(wctx, cl, id, opts, o)
	if err == nil || ctx.Err() != nil || !errors.Is(wctx.Err(), context.DeadlineExceeded) {
		return err
	}
	gctx, gcancel := context.WithTimeout(ctx, 10*time.Second)
	defer gcancel()
	r, gerr := cl.GetJob(gctx, &pb.GetJobRequest{Id: id})
	if gerr != nil {
		return infra(fmt.Errorf("gave up waiting for job %s after %s (--timeout); its state is unknown: %v", id, d, gerr))
	}
	j := r.GetJob()
	msg := fmt.Sprintf("gave up waiting for job %s after %s (--timeout): still %s", id, d, stateName(j.GetState()))
	switch {
	case j.GetWaitingReason() != "":
		msg += ", waiting: " + j.GetWaitingReason()
	case j.GetPublish().GetState() == pb.PublishState_PUBLISH_STATE_PENDING:
		msg = fmt.Sprintf("gave up waiting for job %s after %s (--timeout): built, but its publish is still pending", id, d)
		if why := j.GetPublish().GetReason(); why != "" {
			msg += ": " + why
		}
	}
	if j.GetState() == pb.JobState_JOB_STATE_QUEUED || j.GetState() == pb.JobState_JOB_STATE_RUNNING ||
		j.GetPublish().GetState() == pb.PublishState_PUBLISH_STATE_PENDING {
		msg += fmt.Sprintf("; it goes on (coordinator jobs cancel %s stops it)", id)
	}
	return infra(errors.New(msg))
}

// publishName is a job's publish state for people: empty when it is not
// to be published, the place when published.
func publishName(j *pb.Job) string {
	p := j.GetPublish()
	if p.GetState() == pb.PublishState_PUBLISH_STATE_UNSPECIFIED {
		return ""
	}
	name := strings.ToLower(strings.TrimPrefix(p.GetState().String(), "PUBLISH_STATE_"))
	if p.GetLocation() != "" {
		name += " " + p.GetLocation()
	}
	return name
}
