// Command densessm-plugin-hgrn serves the "hgrn" architecture
// (github.com/densessm/densessm/plugins/examples/hgrn) to a densessm host
// as a plugin. Build it onto DENSESSM_PLUGIN_PATH, or into the per-user
// plugins folder:
//
//	go build -o ~/.config/densessm/plugins/densessm-plugin-hgrn ./cmd/densessm-plugin-hgrn
//
// and the host lists hgrn with its built-in architectures. The host starts
// it; run by hand, it only says that it is a plugin.
package main

import (
	_ "github.com/densessm/densessm/plugins/examples/hgrn" // registers "hgrn"
	"github.com/densessm/densessm/plugins/sdk"
)

// plugin is what the process serves.
var plugin = sdk.Plugin{Name: "hgrn", Version: "0.1.0", Architectures: []string{"hgrn"}}

func main() {
	sdk.Serve(plugin)
}
