// Package serve serves published repositories over HTTP, read-only, the
// way apt and dnf expect: plain files, directory listings off, no symlink
// followed out of the root.
package serve

import (
	"errors"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Handler serves files below root.
type Handler struct {
	root   string
	logger hclog.Logger
}

// New makes a handler for root.
func New(root string, logger hclog.Logger) *Handler {
	return &Handler{root: root, logger: logger}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read-only mirror: use GET", http.StatusMethodNotAllowed)
		return
	}
	clean := path.Clean("/" + r.URL.Path)
	root, err := filepath.EvalSymlinks(h.root)
	if err != nil {
		http.Error(w, "mirror root unavailable", http.StatusServiceUnavailable)
		return
	}
	p, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(clean)))
	if errors.Is(err, os.ErrNotExist) {
		http.NotFound(w, r)
		return
	}
	if err != nil || (p != root && !strings.HasPrefix(p, root+string(filepath.Separator))) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	st, err := os.Stat(p)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if st.IsDir() {
		http.Error(w, "directory listings are off", http.StatusForbidden)
		return
	}
	f, err := os.Open(p)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	h.logger.Trace("serve", "path", clean)
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
}
