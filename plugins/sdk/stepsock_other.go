//go:build !linux

package sdk

// stepSocket is Linux only: elsewhere Steps are gRPC calls.
func (s *server) stepSocket() string { return "" }
