package api

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// The same SubmitJob sent twice with its request id (a client resending a
// submission whose answer it lost) queues one job: the second answer is
// that job, marked repeated. Another spec under the id is refused.
func TestSubmitJobTwiceQueuesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, conn := bufServer(t)
	cl := pb.NewCoordinatorServiceClient(conn)
	req := &pb.SubmitJobRequest{RequestId: "jenkins-main-42-build",
		Spec: &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Command: []string{"make"}, Labels: map[string]string{"os": "linux"}}}
	first, err := cl.SubmitJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := cl.SubmitJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.GetRepeated() || !second.GetRepeated() || second.GetJob().GetId() != first.GetJob().GetId() {
		t.Fatalf("answers: job %s repeated %v, then job %s repeated %v: want the same job, the second repeated",
			first.GetJob().GetId(), first.GetRepeated(), second.GetJob().GetId(), second.GetRepeated())
	}
	list, err := cl.ListJobs(ctx, &pb.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetJobs()); n != 1 {
		t.Fatalf("%d jobs after the same submission twice, want 1", n)
	}
	req.Spec.Command = []string{"make", "check"}
	_, err = cl.SubmitJob(ctx, req)
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "jenkins-main-42-build") ||
		!strings.Contains(st.Message(), "job "+first.GetJob().GetId()) {
		t.Fatalf("same id, other spec: %v, want InvalidArgument naming the id and job %s", err, first.GetJob().GetId())
	}
}
