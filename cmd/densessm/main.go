// Command densessm trains, evaluates and runs state-space language models
// (Mamba, RetNet and their DenseSSM variants) and inspects their checkpoints.
//
// Run `densessm help` for the commands.
package main

import (
	"os"
	"runtime/debug"

	"github.com/densessm/densessm/internal/cli"

	// Built-in backends and architectures register themselves at init
	// (package cli imports them too).
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cpu"
)

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cli.GCPercent) // why 25: see cli.GCPercent
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
