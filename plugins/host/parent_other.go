//go:build !linux

package host

import "os/exec"

// setParentDeath does nothing here: the plugin exits by itself when it is
// re-parented (see sdk.Serve).
func setParentDeath(*exec.Cmd) {}
