// Package label is what the coordinator and the workers agree on about
// labels (key=value pairs that say what a worker has and what a job
// needs): which are valid, how a list of them is written and read.
package label

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxLength bounds a label's key and its value.
const MaxLength = 128

// Validate checks one label.
func Validate(k, v string) error {
	if k == "" || len(k) > MaxLength || len(v) > MaxLength {
		return fmt.Errorf("label %s=%s: keys must be 1 to %d characters, values at most %d", clip(k), clip(v), MaxLength, MaxLength)
	}
	for _, r := range k + v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:", r)) {
			return fmt.Errorf("label %s=%s: use letters, digits and - _ . / : only", clip(k), clip(v))
		}
	}
	return nil
}

// String renders labels as k=v,k=v sorted by key.
func String(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + l[k])
	}
	return b.String()
}

// Parse parses k=v,k=v (spaces around a pair are ignored).
func Parse(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("label %q: use key=value", kv)
		}
		if err := Validate(k, v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// clip quotes s for a message: whole when short, else its first bytes and
// its length, so that an error never echoes megabytes of input.
func clip(s string) string {
	const keep = 40
	if len(s) <= keep {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:keep]), len(s))
}
