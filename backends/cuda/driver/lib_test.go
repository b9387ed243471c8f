package driver

import (
	"os"
	"path/filepath"
	"testing"
)

// SitePackages finds the site-packages of a virtual environment that is
// only on PATH (not activated), as the GPU image's /opt/torch/.venv.
func TestSitePackagesOnPath(t *testing.T) {
	venv := t.TempDir()
	site := filepath.Join(venv, "lib", "python3.12", "site-packages")
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(venv, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(venv, "bin", "python3"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VIRTUAL_ENV", "")
	t.Setenv("PATH", filepath.Join(venv, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	if got := SitePackages(); len(got) == 0 || got[0] != site {
		t.Fatalf("SitePackages() = %v, want %s first", got, site)
	}
}
