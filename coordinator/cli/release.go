package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"

	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/grpcerr"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// releaseCmd is `coordinator release seal|unseal|show|verify R`.
type releaseCmd struct {
	Seal   releaseSealCmd   `cmd:"" help:"Record that from now on every package build of the release draws only from its repositories and its base, never from upstream: those already queued included; it names the running ones, which carry on as they started."`
	Unseal releaseSealCmd   `cmd:"" help:"Let the release's builds draw from upstream again."`
	Show   releaseShowCmd   `cmd:"" help:"Show the release: its packages (newest successful build per target), whether it is sealed, its base, each package's last verification."`
	Verify releaseVerifyCmd `cmd:"" help:"Rebuild every package of the release (or each --package) from its record and compare the packages byte for byte."`
}

// releaseName is the release a release command acts on.
type releaseName struct {
	Release string `arg:"" optional:"" help:"the release, e.g. mos-9.0"`
}

type releaseSealCmd struct {
	Conn
	JSON bool `name:"json" help:"print JSON"`
	releaseName
}

type releaseShowCmd struct {
	Conn
	JSON bool `name:"json" help:"print JSON"`
	releaseName
}

type releaseVerifyCmd struct {
	Conn
	JSON          bool     `name:"json" help:"print JSON"`
	Package       []string `help:"verify only this source package, on every target (repeatable); default every package of the release" sep:"none" placeholder:"P"`
	Wait          bool     `help:"wait for every result, print each as it comes, and exit 0 when all are identical, 1 when any differs or its rebuild failed, 3 when the infrastructure failed"`
	DiffoscopeDir string   `help:"with --wait: fetch both versions of every differing file and write a diffoscope report for each into DIR (needs diffoscope installed)" placeholder:"DIR"`
	releaseName
}

// Run seals or unseals the release.
func (c *releaseSealCmd) Run(ctx context.Context, o IO, k *kong.Context) error {
	return release(ctx, c.Conn, k.Selected().Name, c.Release, c.JSON, releaseVerifyCmd{}, o)
}

// Run shows the release.
func (c *releaseShowCmd) Run(ctx context.Context, o IO) error {
	return release(ctx, c.Conn, "show", c.Release, c.JSON, releaseVerifyCmd{}, o)
}

// Run verifies the release.
func (c *releaseVerifyCmd) Run(ctx context.Context, o IO) error {
	return release(ctx, c.Conn, "verify", c.Release, c.JSON, *c, o)
}

func release(ctx context.Context, c Conn, sub, rel string, jsonOut bool, vc releaseVerifyCmd, o IO) error {
	asJSON, packages, wait, diffDir := &jsonOut, vc.Package, vc.Wait, vc.DiffoscopeDir
	if rel == "" {
		return usage("release %s: give one release name, e.g. coordinator release %s mos-9.0", sub, sub)
	}
	if diffDir != "" && !wait {
		return usage("--diffoscope-dir needs --wait: the reports are made as the results come in")
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	rc := pb.NewReleaseServiceClient(conn)
	switch sub {
	case "seal", "unseal":
		resp, err := rc.SealRelease(ctx, &pb.SealReleaseRequest{Release: rel, Unseal: sub == "unseal", RequestedBy: origin()})
		if err != nil {
			return rpcErr(sub+" release", err)
		}
		if *asJSON {
			return printJSON(o.Out, resp)
		}
		if !resp.GetChanged() {
			fmt.Fprintf(o.Out, "release %s was already %s: nothing changed\n", rel, sealText(resp.GetSeal()))
			return nil
		}
		fmt.Fprintf(o.Out, "release %s %s\n", rel, sealText(resp.GetSeal()))
		sealJobs(o.Out, sub, resp)
		return nil
	case "show":
		resp, err := rc.GetRelease(ctx, &pb.GetReleaseRequest{Release: rel})
		if err != nil {
			return rpcErr("show release", err)
		}
		if *asJSON {
			return printJSON(o.Out, resp.GetRelease())
		}
		return showRelease(o.Out, resp.GetRelease())
	}
	resp, err := rc.VerifyRelease(ctx, &pb.VerifyReleaseRequest{Release: rel, Packages: packages, RequestedBy: origin()})
	if err != nil {
		return rpcErr("verify release", err)
	}
	v := resp.GetVerification()
	fmt.Fprintf(o.Err, "verification %d of release %s: %d packages\n", v.GetId(), rel, len(v.GetItems()))
	if !wait {
		if *asJSON {
			return printJSON(o.Out, v)
		}
		fmt.Fprintln(o.Out, v.GetId())
		return nil
	}
	vw := verifyWatch{cl: pb.NewCoordinatorServiceClient(conn), rc: rc, diffDir: diffDir, o: o, lines: o.Out, printed: map[int]bool{}}
	if *asJSON {
		vw.lines = o.Err
	}
	final, err := vw.run(ctx, v)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(o.Out, final); err != nil {
			return infra(err)
		}
	}
	return verifyOutcome(final, o)
}

func sealText(s *pb.SealState) string {
	when := ""
	if t := s.GetChangedAt(); t != nil {
		when = " at " + t.AsTime().UTC().Format(time.RFC3339)
	}
	switch {
	case s.GetSealed():
		return "sealed by " + s.GetChangedBy() + when
	case when != "":
		return "unsealed by " + s.GetChangedBy() + when
	}
	return "not sealed"
}

// sealJobs says what a seal or unseal did to the release's builds: the
// queued ones re-marked (or failed), the running ones left as they started.
func sealJobs(w io.Writer, sub string, r *pb.SealReleaseResponse) {
	how := "sealed, from the release alone"
	if sub == "unseal" {
		how = "unsealed, from the upstream mirror"
	}
	fmt.Fprintf(w, "queued builds re-marked to build %s: %d%s\n", how, len(r.GetRemarkedJobIds()), jobIDs(r.GetRemarkedJobIds()))
	if n := len(r.GetFailedJobIds()); n > 0 {
		fmt.Fprintf(w, "queued builds ended failed, their chroot is not in the release's base: %d%s (coordinator jobs show ID says why)\n",
			n, jobIDs(r.GetFailedJobIds()))
	}
	running := r.GetRunningJobIds()
	fmt.Fprintf(w, "running builds started before the %s: %d%s", sub, len(running), jobIDs(running))
	switch {
	case len(running) == 0:
		fmt.Fprintln(w)
	case sub == "seal":
		fmt.Fprintln(w, ": they build from the upstream mirror (a retry after an infrastructure failure builds sealed); rebuild them (coordinator rebuild ID) to build them from the release alone")
	default:
		fmt.Fprintln(w, ": they carry on sealed")
	}
}

// jobIDs lists job ids in parentheses, the first 20 of them.
func jobIDs(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	const most = 20
	if len(ids) > most {
		return fmt.Sprintf(" (jobs %s and %d more)", strings.Join(ids[:most], ", "), len(ids)-most)
	}
	if len(ids) == 1 {
		return " (job " + ids[0] + ")"
	}
	return " (jobs " + strings.Join(ids, ", ") + ")"
}

// ResultName is how the CLI prints a verification result.
func ResultName(r pb.VerificationResult) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "VERIFICATION_RESULT_"))
}

func showRelease(w io.Writer, r *pb.Release) error {
	conf := "configured"
	if !r.GetConfigured() {
		conf = "not in the coordinator's config"
	}
	fmt.Fprintf(w, "release:  %s (%s)\n", r.GetName(), conf)
	fmt.Fprintf(w, "sealed:   %s\n", sealText(r.GetSeal()))
	fmt.Fprintf(w, "base:     %d packages, %d bytes\n", r.GetBase().GetPackages(), r.GetBase().GetBytes())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tTARGET\tREVISION\tVERSION\tPUBLISH\tJOB\tLAST VERIFICATION")
	for _, p := range r.GetPackages() {
		ver := "never"
		if lv := p.GetLastVerification(); lv != nil {
			ver = fmt.Sprintf("%s (verification %d, rebuild job %s", ResultName(lv.GetResult()), lv.GetVerificationId(), lv.GetRebuildJobId())
			if t := lv.GetFinishedAt(); t != nil {
				ver += ", " + t.AsTime().UTC().Format(time.RFC3339)
			}
			ver += ")"
		}
		pub := p.GetPublishState()
		if pub == "" {
			pub = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", p.GetPackage(), p.GetTarget(), p.GetRevision(), p.GetVersion(), pub, p.GetJobId(), ver)
	}
	return tw.Flush()
}

// verifyWatch follows a verification and prints each package's result
// once, as it comes in.
type verifyWatch struct {
	cl      pb.CoordinatorServiceClient
	rc      pb.ReleaseServiceClient
	diffDir string
	o       IO
	lines   io.Writer
	printed map[int]bool
	noTool  bool
}

func (w *verifyWatch) run(ctx context.Context, v *pb.Verification) (*pb.Verification, error) {
	var deadline time.Time
	for {
		for i, it := range v.GetItems() {
			if w.printed[i] || !finalResult(it.GetResult()) {
				continue
			}
			w.printed[i] = true
			w.report(ctx, v.GetId(), it)
		}
		if v.GetDone() {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, infra(ctx.Err())
		case <-time.After(time.Second):
		}
		resp, err := w.rc.GetVerification(ctx, &pb.GetVerificationRequest{Id: v.GetId()})
		if err != nil {
			if grpcerr.Classify(err).CallerFault() {
				return nil, rpcErr("follow verification", err)
			}
			// The coordinator may be restarting: the verification goes on
			// there, so keep asking for a while.
			if deadline.IsZero() {
				deadline = time.Now().Add(5 * time.Minute)
			}
			if time.Now().After(deadline) {
				return nil, infra(fmt.Errorf("lost the coordinator while following verification %d: %v", v.GetId(), err))
			}
			continue
		}
		deadline = time.Time{}
		v = resp.GetVerification()
	}
}

func finalResult(r pb.VerificationResult) bool {
	switch r {
	case pb.VerificationResult_VERIFICATION_RESULT_IDENTICAL, pb.VerificationResult_VERIFICATION_RESULT_DIFFERENT,
		pb.VerificationResult_VERIFICATION_RESULT_FAILED, pb.VerificationResult_VERIFICATION_RESULT_ERROR:
		return true
	}
	return false
}

// report prints one line per package: package, version, result, then the
// details in parentheses.
func (w *verifyWatch) report(ctx context.Context, id int64, it *pb.VerificationItem) {
	detail := []string{"target " + it.GetTarget()}
	if it.GetRebuildJobId() != "" {
		detail = append(detail, "rebuild job "+it.GetRebuildJobId()+" of job "+it.GetJobId())
	}
	if d := it.GetDifferingArtifacts(); len(d) > 0 {
		detail = append(detail, "differs: "+strings.Join(d, ", "))
	}
	if it.GetDetail() != "" {
		detail = append(detail, it.GetDetail())
	}
	if it.GetResult() == pb.VerificationResult_VERIFICATION_RESULT_DIFFERENT && w.diffDir != "" {
		detail = append(detail, w.diffoscope(ctx, id, it)...)
	}
	fmt.Fprintf(w.lines, "%s %s %s (%s)\n", it.GetPackage(), it.GetVersion(), ResultName(it.GetResult()), strings.Join(detail, "; "))
}

// diffoscope fetches the original and the rebuilt version of every
// differing file and writes a diffoscope report for each into the
// report directory; it returns what to say about it.
func (w *verifyWatch) diffoscope(ctx context.Context, id int64, it *pb.VerificationItem) []string {
	tool, err := exec.LookPath("diffoscope")
	if err != nil {
		if !w.noTool {
			fmt.Fprintln(w.o.Err, "diffoscope is not installed (Debian package diffoscope): no reports are written")
			w.noTool = true
		}
		return []string{"no diffoscope report: diffoscope is not installed"}
	}
	orig, err := w.cl.GetJob(ctx, &pb.GetJobRequest{Id: it.GetJobId()})
	if err != nil {
		return []string{"no diffoscope report: " + err.Error()}
	}
	rebuilt, err := w.cl.GetJob(ctx, &pb.GetJobRequest{Id: it.GetRebuildJobId()})
	if err != nil {
		return []string{"no diffoscope report: " + err.Error()}
	}
	work, err := os.MkdirTemp(w.diffDir, ".fetch-")
	if err != nil {
		return []string{"no diffoscope report: " + err.Error()}
	}
	defer os.RemoveAll(work)
	var out []string
	for _, name := range it.GetDifferingArtifacts() {
		if n, ok := strings.CutSuffix(name, " (missing)"); ok {
			out = append(out, "no diffoscope report for "+n+": the rebuild did not make it")
			continue
		}
		a, b := artifactNamed(orig.GetJob(), name), artifactNamed(rebuilt.GetJob(), name)
		if a == nil || b == nil {
			out = append(out, "no diffoscope report for "+name+": it is missing from one build")
			continue
		}
		dirA, dirB := filepath.Join(work, "original"), filepath.Join(work, "rebuild")
		if err := fetch(ctx, w.cl, it.GetJobId(), a, dirA); err != nil {
			out = append(out, "no diffoscope report for "+name+": "+err.Error())
			continue
		}
		if err := fetch(ctx, w.cl, it.GetRebuildJobId(), b, dirB); err != nil {
			out = append(out, "no diffoscope report for "+name+": "+err.Error())
			continue
		}
		report := filepath.Join(w.diffDir, fmt.Sprintf("verification-%d_%s_%s_%s.diffoscope.txt", id, it.GetPackage(), it.GetTarget(), path.Base(name)))
		cmd := exec.CommandContext(ctx, tool, "--text", report, filepath.Join(dirA, filepath.FromSlash(name)), filepath.Join(dirB, filepath.FromSlash(name)))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		// diffoscope exits 1 when the files differ, which they do.
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
			out = append(out, fmt.Sprintf("diffoscope on %s failed: %v: %s", name, err, strings.TrimSpace(stderr.String())))
			continue
		}
		out = append(out, "diffoscope report: "+report)
	}
	return out
}

func artifactNamed(j *pb.Job, name string) *pb.Artifact {
	for _, a := range j.GetArtifacts() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// verifyOutcome turns a finished verification into the exit code: 1 when
// any package differs or its rebuild failed, else 3 when the
// infrastructure failed for any, else 0.
func verifyOutcome(v *pb.Verification, o IO) error {
	n := map[pb.VerificationResult]int{}
	for _, it := range v.GetItems() {
		n[it.GetResult()]++
	}
	msg := fmt.Sprintf("verification %d of release %s: %d identical, %d different, %d failed, %d error", v.GetId(), v.GetRelease(),
		n[pb.VerificationResult_VERIFICATION_RESULT_IDENTICAL], n[pb.VerificationResult_VERIFICATION_RESULT_DIFFERENT],
		n[pb.VerificationResult_VERIFICATION_RESULT_FAILED], n[pb.VerificationResult_VERIFICATION_RESULT_ERROR])
	switch {
	case n[pb.VerificationResult_VERIFICATION_RESULT_DIFFERENT]+n[pb.VerificationResult_VERIFICATION_RESULT_FAILED] > 0:
		return cmdline.Failed(errors.New(msg))
	case n[pb.VerificationResult_VERIFICATION_RESULT_ERROR] > 0:
		return infra(errors.New(msg))
	}
	fmt.Fprintln(o.Err, msg)
	return nil
}
