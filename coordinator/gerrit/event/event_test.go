package event

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const (
	psRev     = "8b4f7e0f5bd8d6c5cd3f1fcdbb3bd0a0d4a6c2f1"
	mergedRev = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
	parentRev = "1f1e0a1c6fe14b6c4fd9c0d5f3d4d1c5b1a2e3f4"
	changeID  = "I0123456789abcdef0123456789abcdef01234567"
	nginx     = "mos/packages/trusty/nginx"
)

func TestParseEventShapes(t *testing.T) {
	t.Parallel()
	created := time.Unix(1700000001, 0).UTC()
	cases := []struct {
		file string
		want Event
	}{
		{"v3-patchset-created.json", Event{Type: TypePatchsetCreated, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, PatchSet: 2, Revision: psRev, PatchSetRef: "refs/changes/45/12345/2", CreatedOn: created}},
		{"v2-patchset-created.json", Event{Type: TypePatchsetCreated, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, PatchSet: 2, Revision: psRev, PatchSetRef: "refs/changes/45/12345/2"}},
		{"v3.0-patchset-created-project-object.json", Event{Type: TypePatchsetCreated, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, PatchSet: 2, Revision: psRev, PatchSetRef: "refs/changes/45/12345/2", CreatedOn: created}},
		{"v3-change-merged.json", Event{Type: TypeChangeMerged, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, PatchSet: 3, Revision: psRev, PatchSetRef: "refs/changes/45/12345/3",
			NewRev: mergedRev, CreatedOn: time.Unix(1700000500, 0).UTC()}},
		{"v2-change-merged.json", Event{Type: TypeChangeMerged, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, PatchSet: 3, Revision: psRev, PatchSetRef: "refs/changes/45/12345/3"}},
		{"v3-ref-updated.json", Event{Type: TypeRefUpdated, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			OldRev: parentRev, NewRev: mergedRev, CreatedOn: time.Unix(1700000499, 0).UTC()}},
		{"v2-ref-updated-short-branch.json", Event{Type: TypeRefUpdated, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			OldRev: parentRev, NewRev: mergedRev}},
		{"v3-ref-updated-meta.json", Event{Type: TypeRefUpdated, Project: nginx, RefName: "refs/changes/45/12345/meta",
			OldRev: "aaaa0a1c6fe14b6c4fd9c0d5f3d4d1c5b1a2e3f4", NewRev: "bbbbee00c0ffee00c0ffee00c0ffee00c0ffee00", CreatedOn: time.Unix(1700000499, 0).UTC()}},
		{"v3-ref-updated-branch-created.json", Event{Type: TypeRefUpdated, Project: nginx, Branch: "9.1", RefName: "refs/heads/9.1",
			OldRev: "0000000000000000000000000000000000000000", NewRev: mergedRev, CreatedOn: time.Unix(1700000499, 0).UTC()}},
		{"v3-ref-updated-branch-deleted.json", Event{Type: TypeRefUpdated, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			OldRev: mergedRev, NewRev: "0000000000000000000000000000000000000000", CreatedOn: time.Unix(1700000700, 0).UTC()}},
		{"v3-comment-added-recheck.json", Event{Type: TypeCommentAdded, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, PatchSet: 2, Revision: psRev, PatchSetRef: "refs/changes/45/12345/2",
			Comment: "Patch Set 2:\n\nrecheck", Author: "ann", CreatedOn: time.Unix(1700000300, 0).UTC()}},
		{"v2-comment-added-recheck.json", Event{Type: TypeCommentAdded, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, PatchSet: 2, Revision: psRev, PatchSetRef: "refs/changes/45/12345/2",
			Comment: "Patch Set 2:\n\nrecheck", Author: "ann"}},
		{"v3-change-abandoned.json", Event{Type: TypeChangeAbandoned, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, PatchSet: 2, Revision: psRev, PatchSetRef: "refs/changes/45/12345/2",
			Comment: "Not needed after all: the fix landed upstream.", CreatedOn: time.Unix(1700000800, 0).UTC()}},
		{"v2-change-abandoned.json", Event{Type: TypeChangeAbandoned, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, PatchSet: 2, Revision: psRev, PatchSetRef: "refs/changes/45/12345/2",
			Comment: "Not needed after all: the fix landed upstream."}},
		{"v3-change-deleted.json", Event{Type: TypeChangeDeleted, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, CreatedOn: time.Unix(1700000900, 0).UTC()}},
		{"v2-change-deleted.json", Event{Type: TypeChangeDeleted, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0",
			Change: 12345, ChangeID: changeID, CreatedOn: time.Unix(1700000900, 0).UTC()}},
		{"v3-dropped-output.json", Event{Type: TypeDroppedOutput, CreatedOn: time.Unix(1700000600, 0).UTC()}},
		{"v3-ref-replicated.json", Event{Type: "ref-replicated", CreatedOn: time.Unix(1700000510, 0).UTC()}},
		{"v3-unknown-type.json", Event{Type: "custom-plugin-thing", CreatedOn: time.Unix(1700000510, 0).UTC()}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", "events", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseEvent(data)
			if err != nil {
				t.Fatalf("ParseEvent: %v", err)
			}
			if got != tc.want {
				t.Errorf("ParseEvent:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseEventUnknownFieldsCounted(t *testing.T) {
	t.Parallel()
	line := `{"type":"ref-updated","refUpdate":{"oldRev":"` + parentRev + `","newRev":"` + mergedRev +
		`","refName":"refs/heads/9.0","project":"p"},"brandNew":1,"another":{"x":[1,2]}}`
	ev, err := ParseEvent([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Unknown != 2 {
		t.Errorf("Unknown = %d, want 2", ev.Unknown)
	}
}

func TestParseEventMalformed(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"empty":              ``,
		"not json":           `hello`,
		"array":              `[1,2]`,
		"truncated":          `{"type":"patchset-created","change":{"project":"p"`,
		"no type":            `{"project":"p"}`,
		"number as word":     `{"type":"patchset-created","change":{"project":"p","branch":"b","number":"twelve"},"patchSet":{"number":1,"revision":"` + psRev + `"}}`,
		"bad revision":       `{"type":"patchset-created","change":{"project":"p","branch":"b","number":1},"patchSet":{"number":1,"revision":"HEAD"}}`,
		"no patch set":       `{"type":"patchset-created","change":{"project":"p","branch":"b","number":1}}`,
		"no project":         `{"type":"patchset-created","change":{"branch":"b","number":1},"patchSet":{"number":1,"revision":"` + psRev + `"}}`,
		"ref-updated no rev": `{"type":"ref-updated","refUpdate":{"refName":"refs/heads/b","project":"p"}}`,
		"project wrong type": `{"type":"ref-updated","project":17,"refUpdate":{"oldRev":"` + parentRev + `","newRev":"` + mergedRev + `","refName":"b","project":"p"}}`,

		// change-abandoned and change-deleted need a change, nothing else.
		"abandoned no change":       `{"type":"change-abandoned","project":"p","patchSet":{"number":1,"revision":"` + psRev + `"},"reason":"x"}`,
		"abandoned change as word":  `{"type":"change-abandoned","change":{"project":"p","branch":"b","number":"twelve"},"reason":"x"}`,
		"abandoned negative change": `{"type":"change-abandoned","change":{"project":"p","branch":"b","number":-4}}`,
		"abandoned no project":      `{"type":"change-abandoned","change":{"branch":"b","number":4}}`,
		"abandoned bad revision":    `{"type":"change-abandoned","change":{"project":"p","branch":"b","number":4},"patchSet":{"number":1,"revision":"HEAD~1"}}`,
		"abandoned reason object":   `{"type":"change-abandoned","change":{"project":"p","branch":"b","number":4},"reason":{"text":"x"}}`,
		"deleted zero change":       `{"type":"change-deleted","change":{"project":"p","branch":"b","number":0}}`,
	}
	for name, line := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseEvent([]byte(line))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseEvent(%q) = %v, want ErrMalformed", line, err)
			}
		})
	}
}

func FuzzParseEvent(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "events", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("seed events: %v (%d files)", err, len(files))
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"type":"patchset-created","change":{"number":1e400}}`))
	f.Add([]byte(`{"type":"ref-updated","refUpdate":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParseEvent(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if ev.Type == "" {
			t.Fatal("parsed event without a type")
		}
		if Used(ev.Type) && ev.Type != TypeDroppedOutput {
			if ev.Project == "" {
				t.Fatalf("%s without project accepted", ev.Type)
			}
			switch ev.Type {
			case TypeRefUpdated:
			case TypeChangeAbandoned, TypeChangeDeleted:
				if ev.Change <= 0 || ev.PatchSet < 0 || (ev.Revision != "" && !IsCommit(ev.Revision)) {
					t.Fatalf("%s with bad change %d/%d revision %q accepted", ev.Type, ev.Change, ev.PatchSet, ev.Revision)
				}
			default:
				if !IsCommit(ev.Revision) || ev.Change <= 0 || ev.PatchSet <= 0 {
					t.Fatalf("%s with bad change %d/%d revision %q accepted", ev.Type, ev.Change, ev.PatchSet, ev.Revision)
				}
			}
		}
	})
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"mos/openstack/nova", "9.0", "openstack-ci/fuel-9.0/mitaka", "a_b+c"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v, want ok", ok, err)
		}
	}
	for _, bad := range []string{"", "-upload-pack=x", "/abs", "a/../b", "a//b", "a b", "a\nb", "x.lock", "a..b", "a/"} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) = nil, want an error", bad)
		}
	}
}
