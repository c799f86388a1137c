// Package buildroot runs builds in clean containerd buildroots.
package buildroot

// Config is the worker config file's `buildroot:` section.
type Config struct{}
