package build

import (
	"path"
	"regexp"
	"strings"
)

var (
	specTagRE    = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9]*)\s*:\s*(.*?)\s*$`)
	specDefineRE = regexp.MustCompile(`^%(define|global)\s+([A-Za-z_][A-Za-z0-9_]*)\s+(.*?)\s*$`)
	specMacroRE  = regexp.MustCompile(`%\{(\??)([A-Za-z_][A-Za-z0-9_]*)\}|%([A-Za-z_][A-Za-z0-9_]*)`)
	rpmNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	rpmVersionRE = regexp.MustCompile(`^[A-Za-z0-9._+~^]+$`)
	rpmSuffixRE  = regexp.MustCompile(`^[A-Za-z0-9._+~]*$`)
)

// specInfo is what the builder needs from a spec file.
type specInfo struct {
	Name, Version, Release string
	// Source0 is the file name of the first source (the upstream tarball).
	Source0 string
	// Sources are the file names of every Source and Patch tag.
	Sources []string
	// releaseLine is the index of the line whose Release tag was read.
	releaseLine int
}

// parseSpec reads the preamble of a spec file, expanding simple macros
// (%define, %global, %{name}, %{version}); conditional macros that it does
// not know expand to nothing.
func parseSpec(data []byte) (specInfo, error) {
	var s specInfo
	macros := map[string]string{}
	expand := func(v string) string {
		for range 5 {
			nv := specMacroRE.ReplaceAllStringFunc(v, func(m string) string {
				sm := specMacroRE.FindStringSubmatch(m)
				name, optional := sm[2], sm[1] == "?"
				if name == "" {
					name = sm[3]
				}
				if val, ok := macros[name]; ok {
					return val
				}
				if optional {
					return ""
				}
				return m
			})
			if nv == v {
				break
			}
			v = nv
		}
		return v
	}
	n := -1
	for line := range strings.SplitSeq(string(data), "\n") {
		n++
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, "%description") || strings.HasPrefix(line, "%prep") {
			break
		}
		if m := specDefineRE.FindStringSubmatch(line); m != nil {
			macros[m[2]] = expand(m[3])
			continue
		}
		m := specTagRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		tag, val := strings.ToLower(m[1]), expand(m[2])
		switch {
		case tag == "name" && s.Name == "":
			s.Name = val
			macros["name"] = val
		case tag == "version" && s.Version == "":
			s.Version = val
			macros["version"] = val
		case tag == "release" && s.Release == "":
			s.Release = val
			s.releaseLine = n
			macros["release"] = val
		case strings.HasPrefix(tag, "source") || strings.HasPrefix(tag, "patch"):
			base := path.Base(val)
			if (tag == "source" || tag == "source0") && s.Source0 == "" {
				s.Source0 = base
			}
			s.Sources = append(s.Sources, base)
		}
	}
	switch {
	case !rpmNameRE.MatchString(s.Name):
		return s, badSource("spec: Name %q is missing or not a plain package name", s.Name)
	case !rpmVersionRE.MatchString(s.Version):
		return s, badSource("spec: Version %q is missing or uses macros this builder cannot expand; write it literally", s.Version)
	case s.Release == "":
		return s, badSource("spec: Release tag is missing; add one")
	}
	return s, nil
}

// setSpecRelease appends suffix to the value of the Release tag that
// parseSpec reads; data that parseSpec refuses is returned unchanged.
func setSpecRelease(data []byte, suffix string) []byte {
	if suffix == "" {
		return data
	}
	s, err := parseSpec(data)
	if err != nil {
		return data
	}
	lines := strings.Split(string(data), "\n")
	m := specTagRE.FindStringSubmatch(strings.TrimRight(lines[s.releaseLine], "\r"))
	lines[s.releaseLine] = m[1] + ": " + m[2] + suffix
	return []byte(strings.Join(lines, "\n"))
}
