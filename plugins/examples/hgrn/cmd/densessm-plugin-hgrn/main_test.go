package main

import (
	"testing"

	"github.com/densessm/densessm/plugins/sdk"
)

// TestServable checks that what main serves is registered in this process
// (the hgrn architecture and the cpu backend) and that the SDK builds a
// server for it.
func TestServable(t *testing.T) {
	if err := plugin.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := sdk.NewServer(plugin); err != nil {
		t.Fatal(err)
	}
}
