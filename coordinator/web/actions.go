package web

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/publish"
)

// jobActions says which of a job's actions its page offers.
type jobActions struct {
	Cancel, Rebuild, Verify bool
}

func actionsFor(j *job.Job) jobActions {
	return jobActions{
		Cancel:  !j.State.Final() || (j.State == job.Succeeded && pendingPublish(j)),
		Rebuild: j.State.Final() && j.Spec.Build != nil,
		Verify:  j.State == job.Succeeded && j.Spec.Build != nil && j.Record != nil,
	}
}

func pendingPublish(j *job.Job) bool {
	st, _, _ := publish.Parse(j.Publish)
	return st == publish.StatePending
}

// cancelReason is the reason a cancel from the pages records.
const cancelReason = "cancelled from the web page"

// jobAction cancels, rebuilds or verifies a job from its page's forms,
// under the drain form's rules: actions on, POST only, from the pages' own
// origin on a loopback host. It calls what CancelJob and RebuildJob call.
func (s *Server) jobAction(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Actions {
		s.fail(w, r, fmt.Errorf("%w: actions are off on this coordinator's pages (on only in development mode); use `coordinator jobs cancel` or `coordinator jobs rebuild`", errForbidden))
		return
	}
	if err := sameOrigin(r); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	id, action := r.PathValue("id"), r.PathValue("action")
	switch action {
	case "cancel":
		j, err := s.f.Cancel(ctx, id, cancelReason)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if j.State == job.Succeeded && pendingPublish(j) && s.cfg.Publish != nil {
			if err := s.cfg.Publish.Cancel(ctx, j.ID, cancelReason); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		s.cfg.Logger.Info("job cancelled from the web page", "job_id", id)
		http.Redirect(w, r, jobURL(id), http.StatusSeeOther)
	case "rebuild", "verify":
		j, err := s.f.Rebuild(ctx, id, action == "verify")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.cfg.Logger.Info("job rebuilt from the web page", "job_id", id, "rebuild_id", j.ID, "verify", action == "verify")
		http.Redirect(w, r, jobURL(j.ID), http.StatusSeeOther)
	default:
		s.fail(w, r, fmt.Errorf("%w: action %q: use cancel, rebuild or verify", fleet.ErrNotFound, action))
	}
}

func jobURL(id string) string { return "/jobs/" + url.PathEscape(id) }
