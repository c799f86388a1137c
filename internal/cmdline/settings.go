package cmdline

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// EnvName is the environment variable of a setting: prefix, then name
// (a flag's name or a config key's path) in upper case with every '-' and
// '.' turned into '_'. EnvName("KILN_WORKER_", "work-dir") is
// KILN_WORKER_WORK_DIR; EnvName("KILN_WORKER_", "buildroot.state_dir") is
// KILN_WORKER_BUILDROOT_STATE_DIR.
func EnvName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// leaf is one setting of a config file: a value that is not a section.
type leaf struct {
	key string // YAML path, "log.level"
	typ reflect.Type
}

// leaves lists the settings of the config struct type t in file order:
// scalars, lists of strings and string maps. Lists and maps of sections
// (releases, repositories, targets) are set in the file only.
func leaves(t reflect.Type) []leaf {
	var out []leaf
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if opts == "inline" {
				walk(ft, prefix)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			key := prefix + name
			switch {
			case settable(ft):
				out = append(out, leaf{key: key, typ: ft})
			case ft.Kind() == reflect.Struct:
				walk(ft, key+".")
			}
		}
	}
	walk(t, "")
	return out
}

var durationType = reflect.TypeFor[time.Duration]()

// settable reports whether a value of type t is one setting that an
// environment variable or a flag can give.
func settable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	case reflect.Map:
		return t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String
	}
	return false
}

// field returns the field at the YAML path key in the struct v points to,
// allocating the sections on the way when alloc is set. ok is false when
// a section on the way is nil and alloc is not set.
func field(v reflect.Value, key string, alloc bool) (f reflect.Value, ok bool) {
	for part := range strings.SplitSeq(key, ".") {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !alloc {
					return reflect.Value{}, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		next, found := fieldNamed(v, part, alloc)
		if !found {
			panic(fmt.Sprintf("cmdline: no config key %q in %s", key, v.Type()))
		}
		if next.Kind() == reflect.Pointer && next.IsNil() && !alloc {
			return reflect.Value{}, false
		}
		v = next
	}
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			if !alloc {
				return reflect.Value{}, false
			}
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	return v, true
}

// fieldNamed finds the field with YAML name name in the struct v, looking
// into inline structs.
func fieldNamed(v reflect.Value, name string, alloc bool) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		n, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			fv := v.Field(i)
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					if !alloc {
						continue
					}
					fv.Set(reflect.New(fv.Type().Elem()))
				}
				fv = fv.Elem()
			}
			if r, ok := fieldNamed(fv, name, alloc); ok {
				return r, true
			}
			continue
		}
		if n == "" {
			n = strings.ToLower(f.Name)
		}
		if n == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// setFromText sets dst from an environment variable's text: a list or a
// map as a flag takes it (a,b and k=v,k=v), anything else as the same
// value in the YAML file would be read.
func setFromText(dst reflect.Value, text string) error {
	switch dst.Kind() {
	case reflect.String:
		dst.SetString(text)
		return nil
	case reflect.Slice:
		var items []string
		for s := range strings.SplitSeq(text, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		dst.Set(reflect.ValueOf(items).Convert(dst.Type()))
		return nil
	case reflect.Map:
		m := reflect.MakeMap(dst.Type())
		for s := range strings.SplitSeq(text, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			k, v, ok := strings.Cut(s, "=")
			if !ok || k == "" {
				return fmt.Errorf("%q is not KEY=VALUE: give KEY=VALUE,KEY=VALUE", s)
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(dst.Type().Key()), reflect.ValueOf(v).Convert(dst.Type().Elem()))
		}
		merge(dst, m)
		return nil
	}
	p := reflect.New(dst.Type())
	if err := yaml.Unmarshal([]byte(text), p.Interface()); err != nil {
		return fmt.Errorf("%q is not a %s", text, typeName(dst.Type()))
	}
	dst.Set(p.Elem())
	return nil
}

// merge adds the entries of src to the map dst: labels and tokens given
// by the environment or a flag add to the file's.
func merge(dst, src reflect.Value) {
	if dst.IsNil() {
		dst.Set(reflect.MakeMap(dst.Type()))
	}
	it := src.MapRange()
	for it.Next() {
		dst.SetMapIndex(it.Key(), it.Value().Convert(dst.Type().Elem()))
	}
}

// assign sets the config field dst from a flag's parsed value src.
func assign(dst, src reflect.Value) {
	for src.Kind() == reflect.Pointer {
		if src.IsNil() {
			return
		}
		src = src.Elem()
	}
	if dst.Kind() == reflect.Map && src.Kind() == reflect.Map {
		merge(dst, src)
		return
	}
	dst.Set(src.Convert(dst.Type()))
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration (e.g. 30s, 5m, 1h)"
	case t.Kind() == reflect.Bool:
		return "boolean (true or false)"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "whole number"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "number"
	}
	return t.String()
}

// display formats a default value for help and man pages; "" for a zero
// value.
func display(v reflect.Value) string {
	if !v.IsValid() || v.IsZero() {
		return ""
	}
	switch v.Kind() {
	case reflect.Slice:
		var s []string
		for i := range v.Len() {
			s = append(s, fmt.Sprint(v.Index(i).Interface()))
		}
		return strings.Join(s, ",")
	case reflect.Map:
		var s []string
		it := v.MapRange()
		for it.Next() {
			s = append(s, fmt.Sprintf("%v=%v", it.Key().Interface(), it.Value().Interface()))
		}
		slices.Sort(s)
		return strings.Join(s, ",")
	}
	return fmt.Sprint(v.Interface())
}

// lookupEnv returns the first of names set in the environment.
func lookupEnv(names []string) (string, string, bool) {
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			return n, v, true
		}
	}
	return "", "", false
}
