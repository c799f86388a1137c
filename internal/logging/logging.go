// Package logging builds a binary's root logger.
package logging

import (
	"fmt"
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
)

// Options configure the root logger.
type Options struct {
	Name string
	// Level is trace, debug, info, warn or error; info when empty.
	Level string
	// JSON switches from text to JSON lines.
	JSON   bool
	Output io.Writer
}

// New builds the root logger and redirects the standard log package into it.
func New(o Options) (hclog.Logger, error) {
	level := hclog.Info
	if o.Level != "" {
		level = hclog.LevelFromString(o.Level)
		if level == hclog.NoLevel {
			return nil, fmt.Errorf("log level %q: use trace, debug, info, warn or error", o.Level)
		}
	}
	l := hclog.New(&hclog.LoggerOptions{
		Name:       o.Name,
		Level:      level,
		JSONFormat: o.JSON,
		Output:     o.Output,
	})
	log.SetOutput(l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}))
	log.SetPrefix("")
	log.SetFlags(0)
	return l, nil
}
