//go:build gopydeps

package pybind

// The Go code gopy generates for this package imports gopy's handle
// package; this import (in a file no build uses) keeps it in go.mod and
// go.sum, so that the extension builds without asking the module proxy.
import _ "github.com/go-python/gopy/gopyh"
