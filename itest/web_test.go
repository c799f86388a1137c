package itest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/coordinator/web/webtest"
	"github.com/kiln-build/kiln/internal/testenv"

	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// TestWebPagesOfADevFleet drives the web pages of a dev fleet of real
// processes (coordinator serve --dev and a worker) in Debian's chromium:
// the overview shows the running job and its worker, the job's page shows
// lines as the job prints them, a finished job's artifact downloaded by
// the page has the sha256 the page and the coordinator give, and a waiting
// job shows why it waits and is cancelled from its page.
func TestWebPagesOfADevFleet(t *testing.T) {
	t.Parallel()
	bin := testenv.Tool(t, "chromium")
	c := newCluster(t)
	c.worker("w-web", "pool=web", 1)
	gate := filepath.Join(t.TempDir(), "go")
	id := c.submit(cmdJob(map[string]string{"pool": "web"},
		"echo first line; while [ ! -e "+gate+" ]; do sleep 0.1; done; echo second line; mkdir -p out; echo artifact-of-$KILN_JOB_ID > out/a.txt", "out/*"))
	c.waitState(id, pb.JobState_JOB_STATE_RUNNING)

	b := webtest.StartBrowser(t, bin)
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		b.Call(t, m, nil)
	}
	base := "http://" + c.httpAddr
	text := func(s any) string { v, _ := s.(string); return v }
	b.Call(t, "Page.navigate", map[string]any{"url": base + "/"})
	// The overview: the running job links to its page, with its worker.
	b.WaitFor(t, `(document.querySelector('a[href="/jobs/`+id+`"]') || {closest: () => null}).closest("tr")?.textContent ?? ""`,
		func(v any) bool { return strings.Contains(text(v), "w-web") })

	// The running job's page: a line printed after the page loaded
	// appears without a reload.
	b.Call(t, "Page.navigate", map[string]any{"url": base + "/jobs/" + id})
	logText := `document.getElementById("log").textContent`
	b.WaitFor(t, logText, func(v any) bool { return strings.Contains(text(v), "first line") })
	if strings.Contains(text(b.Eval(t, logText)), "second line") {
		t.Fatal("the job printed its second line before the gate opened: the test shows nothing")
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.WaitFor(t, logText, func(v any) bool { return strings.Contains(text(v), "second line") })
	b.WaitFor(t, `document.getElementById("job-state").textContent`, func(v any) bool { return v == "succeeded" })

	// The finished job's artifact, fetched by the page, digested there.
	b.Call(t, "Page.reload", nil)
	b.WaitFor(t, `document.querySelectorAll("a[download]").length`, func(v any) bool { return v == 1.0 })
	res := b.Call(t, "Runtime.evaluate", map[string]any{"awaitPromise": true, "returnByValue": true, "expression": `(async () => {
		const a = document.querySelector("a[download]");
		const body = await (await fetch(a.href)).arrayBuffer();
		const d = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
		return [a.textContent, Array.from(d, x => x.toString(16).padStart(2, "0")).join(""),
			a.closest("tr").querySelector("code.sum").textContent, new TextDecoder().decode(body)];
	})()`})
	var r struct{ Result struct{ Value []string } }
	if err := json.Unmarshal(res, &r); err != nil || len(r.Result.Value) != 4 {
		t.Fatalf("artifact check in the page: %v %s", err, res)
	}
	name, digest, shown, body := r.Result.Value[0], r.Result.Value[1], r.Result.Value[2], r.Result.Value[3]
	j, err := c.client.GetJob(context.Background(), &pb.GetJobRequest{Id: id})
	if err != nil || len(j.GetJob().GetArtifacts()) != 1 {
		t.Fatalf("job %s: %v %v", id, j, err)
	}
	recorded := j.GetJob().GetArtifacts()[0]
	if name != "out/a.txt" || digest != recorded.GetSha256() || shown != recorded.GetSha256() || body != "artifact-of-"+id+"\n" {
		t.Errorf("artifact %q: downloaded sha256 %s, page shows %s, coordinator recorded %s; content %q", name, digest, shown, recorded.GetSha256(), body)
	}

	// A job no worker can take: its page says why, and cancels it.
	queued := c.submit(cmdJob(map[string]string{"pool": "nowhere"}, "true"))
	b.Call(t, "Page.navigate", map[string]any{"url": base + "/jobs/" + queued})
	b.WaitFor(t, `(document.querySelector(".waiting") || {}).textContent`, func(v any) bool { return strings.Contains(text(v), "pool=nowhere") })
	b.Eval(t, `document.querySelector('form[action$="/cancel"] button').click()`)
	b.WaitFor(t, `(document.getElementById("job-state") || {}).textContent`, func(v any) bool { return v == "canceled" })
	c.waitState(queued, pb.JobState_JOB_STATE_CANCELED)
	if v := b.Violations(); len(v) > 0 {
		t.Errorf("the pages broke their Content-Security-Policy or threw: %q", v)
	}
}
