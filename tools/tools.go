//go:build tools

// Package tools pins the code generators the Makefile runs (make proto;
// gopy and goimports for the Python package, python/build_ext.py), so that
// they build from this module's go.sum rather than from whatever version a
// registry resolves.
package tools

import (
	_ "github.com/go-python/gopy"
	_ "golang.org/x/tools/cmd/goimports"
	_ "google.golang.org/grpc/cmd/protoc-gen-go-grpc"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
