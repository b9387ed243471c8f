package host

import (
	"os/exec"
	"syscall"
)

// setParentDeath asks the kernel to kill the plugin when the host dies.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
