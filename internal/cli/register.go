package cli

// The built-in backends and architectures register themselves at init: an
// importer of cli has them, as the densessm command does.
import (
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cpu"
)
