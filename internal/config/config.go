// Package config loads a binary's configuration file strictly: unknown keys
// and type mismatches are errors that name the file and the line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Load decodes the YAML file at path into dst, which holds the defaults and
// keeps them for keys the file does not set. An empty path is no file.
func Load(path string, dst any) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return Decode(path, data, dst)
}

// Decode decodes YAML data strictly into dst; name is used in errors.
func Decode(name string, data []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: defaults
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fmt.Errorf("config %s: %s", name, strings.Join(te.Errors, "; "))
		}
		return fmt.Errorf("config %s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: more than one YAML document; keep one", name)
	}
	return nil
}

// Env returns the value of the environment variable name when set.
func Env(name string) (string, bool) {
	v, ok := os.LookupEnv(name)
	return v, ok && v != ""
}
