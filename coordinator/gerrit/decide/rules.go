package decide

import (
	"fmt"
	"regexp"
	"strings"
)

// Rule maps projects and branches to builds.
//
// Patterns are split on "/"; a segment {name} matches one non-empty segment
// and binds name (to the regular expression in Where when given), any other
// segment matches itself. The bound names fill the templates of Branches.
type Rule struct {
	Name string `yaml:"name"`
	// Sources are the projects that make up the package: one combined
	// source, or a code and a packaging source. A change to any of them
	// builds with all of them: the changed one at the change's revision, the
	// others at the head of the same branch.
	Sources []RuleSource `yaml:"sources"`
	// Where restricts placeholders to regular expressions (whole match).
	Where map[string]string `yaml:"where"`
	// Branches are tried in order; the first match decides.
	Branches []BranchRule `yaml:"branches"`
}

// RuleSource is one project pattern of a rule.
type RuleSource struct {
	Project string `yaml:"project"`
	// Role is combined, code or packaging.
	Role string `yaml:"role"`
}

// BranchRule maps a branch pattern to release, targets and package.
type BranchRule struct {
	Branch  string   `yaml:"branch"`
	Release string   `yaml:"release"`
	Targets []string `yaml:"targets"`
	Package string   `yaml:"package"`
}

// Source roles.
const (
	RoleCombined  = "combined"
	RoleCode      = "code"
	RolePackaging = "packaging"
)

// pattern is a compiled project or branch pattern: "/"-separated segments
// of literal text and {name} placeholders, each placeholder matching a
// non-empty part of one segment (restricted further by the rule's where).
type pattern struct {
	text  string
	re    *regexp.Regexp
	names []string
}

var placeholderRE = regexp.MustCompile(`\{([a-z_][a-z0-9_]*)\}`)

func compilePattern(text string, where map[string]string) (pattern, error) {
	if text == "" {
		return pattern{}, fmt.Errorf("empty pattern; write e.g. {customer}/packages/{distribution}/{package}")
	}
	p := pattern{text: text}
	var b strings.Builder
	b.WriteString("^")
	seen := map[string]bool{}
	for i, seg := range strings.Split(text, "/") {
		if i > 0 {
			b.WriteString("/")
		}
		if seg == "" {
			return pattern{}, fmt.Errorf("pattern %q: empty segment", text)
		}
		last := 0
		prevEnd := -1
		for _, m := range placeholderRE.FindAllStringSubmatchIndex(seg, -1) {
			if m[0] == prevEnd {
				return pattern{}, fmt.Errorf("pattern %q: placeholders must be separated by text", text)
			}
			lit := seg[last:m[0]]
			if strings.ContainsAny(lit, "{}") {
				return pattern{}, fmt.Errorf("pattern %q: %q is not a {placeholder}", text, lit)
			}
			b.WriteString(regexp.QuoteMeta(lit))
			name := seg[m[2]:m[3]]
			if seen[name] {
				return pattern{}, fmt.Errorf("pattern %q: placeholder {%s} used twice", text, name)
			}
			seen[name] = true
			p.names = append(p.names, name)
			expr := `[^/]+`
			if w, ok := where[name]; ok {
				expr = w
			}
			b.WriteString("(?P<" + name + ">(?:" + expr + "))")
			last, prevEnd = m[1], m[1]
		}
		lit := seg[last:]
		if strings.ContainsAny(lit, "{}") {
			return pattern{}, fmt.Errorf("pattern %q: %q is not a {placeholder}", text, lit)
		}
		b.WriteString(regexp.QuoteMeta(lit))
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return pattern{}, fmt.Errorf("pattern %q: %w", text, err)
	}
	p.re = re
	return p, nil
}

// match binds the placeholders of p in name into vars, which it extends;
// it reports false when name does not match or contradicts vars.
func (p pattern) match(name string, vars map[string]string) bool {
	m := p.re.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	bound := map[string]string{}
	for i, n := range p.re.SubexpNames() {
		if n == "" || i >= len(m) {
			continue
		}
		v := m[i]
		if v == "" || strings.Contains(v, "/") {
			return false
		}
		if old, ok := vars[n]; ok && old != v {
			return false
		}
		bound[n] = v
	}
	for k, v := range bound {
		vars[k] = v
	}
	return true
}

// expand fills p's placeholders from vars.
func (p pattern) expand(vars map[string]string) (string, error) {
	return fill(p.text, vars)
}

var templateVar = regexp.MustCompile(`\{([a-z_][a-z0-9_]*)\}`)

// fill replaces {name} in a template; unknown names are an error.
func fill(tmpl string, vars map[string]string) (string, error) {
	var missing string
	out := templateVar.ReplaceAllStringFunc(tmpl, func(m string) string {
		k := m[1 : len(m)-1]
		v, ok := vars[k]
		if !ok && missing == "" {
			missing = k
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("template %q: {%s} is not bound by the project or branch pattern", tmpl, missing)
	}
	return out, nil
}

type compiledRule struct {
	name     string
	sources  []compiledSource
	branches []compiledBranch
}

type compiledSource struct {
	pattern pattern
	role    string
}

type compiledBranch struct {
	pattern pattern
	rule    BranchRule
}

// CheckRule tells what is wrong with a rule, or nil.
func CheckRule(r Rule) error {
	_, err := compileRule(r)
	return err
}

func compileRule(r Rule) (compiledRule, error) {
	cr := compiledRule{name: r.Name}
	for k, expr := range r.Where {
		if _, err := regexp.Compile(expr); err != nil {
			return cr, fmt.Errorf("where %s %q: %w", k, expr, err)
		}
		if !placeholderRE.MatchString("{" + k + "}") {
			return cr, fmt.Errorf("where %q: not a placeholder name (lower case letters, digits, _)", k)
		}
	}
	if len(r.Sources) == 0 || len(r.Sources) > 2 {
		return cr, fmt.Errorf("sources: want one combined source or a code and a packaging source, got %d", len(r.Sources))
	}
	vars := map[string]bool{}
	roles := map[string]bool{}
	for _, s := range r.Sources {
		p, err := compilePattern(s.Project, r.Where)
		if err != nil {
			return cr, fmt.Errorf("sources: %w", err)
		}
		switch s.Role {
		case RoleCombined, RoleCode, RolePackaging:
		default:
			return cr, fmt.Errorf("source %q: role %q: use combined, code or packaging", s.Project, s.Role)
		}
		if roles[s.Role] {
			return cr, fmt.Errorf("source %q: role %s given twice", s.Project, s.Role)
		}
		roles[s.Role] = true
		for _, n := range p.names {
			vars[n] = true
		}
		cr.sources = append(cr.sources, compiledSource{pattern: p, role: s.Role})
	}
	if len(r.Sources) == 1 && !roles[RoleCombined] {
		return cr, fmt.Errorf("a single source must have role combined, not %s", r.Sources[0].Role)
	}
	if len(r.Sources) == 2 && !(roles[RoleCode] && roles[RolePackaging]) {
		return cr, fmt.Errorf("two sources must be one code and one packaging source")
	}
	if len(cr.sources) == 2 {
		// Each source must be derivable from the other's bindings.
		for i, s := range cr.sources {
			other := cr.sources[1-i]
			for _, n := range s.pattern.names {
				if !hasVar(other.pattern, n) {
					return cr, fmt.Errorf("source %q: {%s} does not appear in %q, so one cannot be found from the other", s.pattern.text, n, other.pattern.text)
				}
			}
		}
	}
	if len(r.Branches) == 0 {
		return cr, fmt.Errorf("branches: none; add e.g. {branch: \"{fuel}\", release: ..., targets: [...], package: \"{package}\"}")
	}
	for _, b := range r.Branches {
		p, err := compilePattern(b.Branch, r.Where)
		if err != nil {
			return cr, fmt.Errorf("branches: %w", err)
		}
		all := map[string]string{}
		for k := range vars {
			all[k] = k
		}
		for _, n := range p.names {
			all[n] = n
		}
		if b.Release == "" || b.Package == "" || len(b.Targets) == 0 {
			return cr, fmt.Errorf("branch %q: release, package and targets are all required", b.Branch)
		}
		for _, t := range append([]string{b.Release, b.Package}, b.Targets...) {
			if _, err := fill(t, all); err != nil {
				return cr, fmt.Errorf("branch %q: %w", b.Branch, err)
			}
		}
		cr.branches = append(cr.branches, compiledBranch{pattern: p, rule: b})
	}
	return cr, nil
}

func hasVar(p pattern, name string) bool {
	for _, n := range p.names {
		if n == name {
			return true
		}
	}
	return false
}

// Plan is what a project and branch build: one package of one release for
// some targets, from the listed projects.
type Plan struct {
	Rule    string
	Release string
	Package string
	Targets []string
	// Sources lists every project of the package with its role, in the
	// rule's order.
	Sources []PlanSource
}

// PlanSource is one project of a Plan.
type PlanSource struct {
	Project string
	Role    string
}

// Rules resolve a project and branch to a Plan.
type Rules struct {
	rules []compiledRule
}

// NewRules compiles rules, in order: the first whose project and branch
// patterns match decides.
func NewRules(rules []Rule) (*Rules, error) {
	m := &Rules{}
	for i, r := range rules {
		cr, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("rule %d (%s): %w", i, r.Name, err)
		}
		m.rules = append(m.rules, cr)
	}
	return m, nil
}

// Resolve returns the plan for project and branch, or ok false when no rule
// tracks them.
func (m *Rules) Resolve(project, branch string) (Plan, bool, error) {
	for _, r := range m.rules {
		for _, src := range r.sources {
			vars := map[string]string{}
			if !src.pattern.match(project, vars) {
				continue
			}
			for _, b := range r.branches {
				bv := map[string]string{}
				for k, v := range vars {
					bv[k] = v
				}
				if !b.pattern.match(branch, bv) {
					continue
				}
				plan := Plan{Rule: r.name}
				var err error
				if plan.Release, err = fill(b.rule.Release, bv); err != nil {
					return Plan{}, false, err
				}
				if plan.Package, err = fill(b.rule.Package, bv); err != nil {
					return Plan{}, false, err
				}
				for _, t := range b.rule.Targets {
					v, err := fill(t, bv)
					if err != nil {
						return Plan{}, false, err
					}
					plan.Targets = append(plan.Targets, v)
				}
				for _, s := range r.sources {
					p, err := s.pattern.expand(bv)
					if err != nil {
						return Plan{}, false, err
					}
					plan.Sources = append(plan.Sources, PlanSource{Project: p, Role: s.role})
				}
				return plan, true, nil
			}
		}
	}
	return Plan{}, false, nil
}
