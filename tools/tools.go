//go:build tools

// Package tools pins the code generators the Makefile runs (make proto),
// so that they build from this module's go.sum rather than from whatever
// version a registry resolves.
package tools

import (
	_ "google.golang.org/grpc/cmd/protoc-gen-go-grpc"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
