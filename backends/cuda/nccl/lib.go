package nccl

import "github.com/densessm/densessm/backends/cuda/driver"

// Env names libnccl.so.2, or a directory holding it (searched directly
// and in lib, lib64 and nvidia/nccl/lib: an NCCL tarball, a pip --target
// directory, a site-packages directory with the nvidia-nccl-cu13 or -cu12
// wheel), to look at before the usual places.
const Env = "DENSESSM_NCCL"

var (
	names = []string{"libnccl.so.2"}
	// Both nvidia-nccl-cu12 and nvidia-nccl-cu13 (2.32.6 checked) put the
	// library in nvidia/nccl/lib.
	subdirs = []string{"lib", "lib64", "nvidia/nccl/lib"}
)

// candidates is where Load looks, in order: DENSESSM_NCCL, the dynamic
// loader's search for libnccl.so.2 (LD_LIBRARY_PATH, the ld.so cache:
// Debian's and Ubuntu's libnccl2 package), the CUDA toolkit's directories
// (where NCCL's tarball is often unpacked), then the wheels in Python's
// site-packages directories.
func candidates() []string {
	c := driver.EnvCandidates(Env, names, subdirs)
	c = append(c, names...)
	c = append(c, driver.InDirs(driver.ToolkitDirs(), []string{""}, names)...)
	return append(c, driver.InDirs(driver.SitePackages(), subdirs[2:], names)...)
}
