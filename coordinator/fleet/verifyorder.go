package fleet

import (
	"path"
	"sort"
	"strings"
)

// VerifyNode is one package build of a release, as far as the order of its
// verification goes.
type VerifyNode struct {
	Target string
	// Produces are the names of the binary packages the build made.
	Produces []string
	// Installs are the names of the packages its buildroot had installed.
	Installs []string
}

// VerifyOrder orders the verification of a release's builds: a build comes
// after every build of the same target whose binary packages its buildroot
// installed (its build dependencies built in the release). Builds that
// depend on each other in a cycle keep no order among themselves. It
// returns the order (indexes into nodes, a node always after those it
// depends on, otherwise in the given order) and, per node, the nodes it
// comes after.
func VerifyOrder(nodes []VerifyNode) (order []int, after [][]int) {
	producer := map[string][]int{} // target + "\x00" + binary name -> nodes
	for i, n := range nodes {
		for _, b := range n.Produces {
			k := n.Target + "\x00" + b
			producer[k] = append(producer[k], i)
		}
	}
	deps := make([][]int, len(nodes))
	for i, n := range nodes {
		seen := map[int]bool{}
		for _, name := range n.Installs {
			for _, q := range producer[n.Target+"\x00"+name] {
				if q != i && !seen[q] {
					seen[q] = true
					deps[i] = append(deps[i], q)
				}
			}
		}
		sort.Ints(deps[i])
	}
	comp := components(deps)
	after = make([][]int, len(nodes))
	for i := range nodes {
		for _, q := range deps[i] {
			if comp[q] != comp[i] {
				after[i] = append(after[i], q)
			}
		}
	}
	// Kahn's algorithm, taking the lowest ready index first so that
	// independent builds keep the order they were given in.
	waiting := make([]int, len(nodes))
	dependents := make([][]int, len(nodes))
	for i, a := range after {
		waiting[i] = len(a)
		for _, q := range a {
			dependents[q] = append(dependents[q], i)
		}
	}
	var ready []int
	for i := range nodes {
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	for len(ready) > 0 {
		sort.Ints(ready)
		i := ready[0]
		ready = ready[1:]
		order = append(order, i)
		for _, d := range dependents[i] {
			if waiting[d]--; waiting[d] == 0 {
				ready = append(ready, d)
			}
		}
	}
	return order, after
}

// components returns each node's strongly connected component (Tarjan's
// algorithm) of the graph where deps[i] are the nodes i depends on.
func components(deps [][]int) []int {
	n := len(deps)
	index, low, comp := make([]int, n), make([]int, n), make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i], comp[i] = -1, -1
	}
	var stack []int
	next, ncomp := 0, 0
	var visit func(v int)
	visit = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range deps[v] {
			if index[w] < 0 {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp[w] = ncomp
				if w == v {
					break
				}
			}
			ncomp++
		}
	}
	for i := range deps {
		if index[i] < 0 {
			visit(i)
		}
	}
	return comp
}

// BinaryName returns the package name of a binary package file: name of
// name_version_arch.deb (.udeb, .ddeb) or of name-version-release.arch.rpm.
// Source packages and other files have none.
func BinaryName(file string) (string, bool) {
	base := path.Base(file)
	for _, suf := range []string{".deb", ".udeb", ".ddeb"} {
		if strings.HasSuffix(base, suf) {
			name, _, ok := strings.Cut(base, "_")
			return name, ok && name != ""
		}
	}
	if !strings.HasSuffix(base, ".rpm") || strings.HasSuffix(base, ".src.rpm") || strings.HasSuffix(base, ".nosrc.rpm") {
		return "", false
	}
	s := strings.TrimSuffix(base, ".rpm")
	if i := strings.LastIndexByte(s, '.'); i > 0 {
		s = s[:i] // architecture
	}
	for range 2 { // release, then version
		i := strings.LastIndexByte(s, '-')
		if i <= 0 {
			return "", false
		}
		s = s[:i]
	}
	return s, true
}
