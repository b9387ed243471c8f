package hgrn_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/plugins/conformance"
	"github.com/densessm/densessm/plugins/host"

	_ "github.com/densessm/densessm/plugins/examples/hgrn"
	_ "github.com/densessm/densessm/plugins/sdk" // what the plugin links
)

// TestThroughThePlugin builds the plugin and checks that an hgrn model
// served by it is the in-process model, bit for bit (the toolkit's
// conformance suite: logits in every form, steps, sampling, training).
func TestThroughThePlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	// The plugin's main, read so that go test's cache knows the result
	// depends on it (the package and the SDK it links, this test links).
	if _, err := os.ReadFile("cmd/densessm-plugin-hgrn/main.go"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "densessm-plugin-hgrn")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/densessm-plugin-hgrn").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p, err := host.Open(t.Context(), bin, host.Options{Dirs: []string{dir}, LockFile: filepath.Join(dir, "none.lock")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	arch, err := api.LookupArchitecture("hgrn")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := arch.ParseConfig([]byte(`{"vocab_size": 48, "hidden_size": 16, "num_hidden_layers": 3, "intermediate_size": 32, "dense_m": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	o := api.BuildOptions{BackendOptions: api.BackendOptions{Threads: 2}, Seed: 3}
	local, err := arch.New(t.Context(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := p.Architecture("hgrn").New(t.Context(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	conformance.Check(t, local, remote)
}
