package retnet

import (
	"testing"

	"github.com/densessm/densessm/architectures/modeltest"
)

// FuzzParseConfig checks that any config.json is parsed or refused, never
// a panic, and that a parsed one validates and estimates its memory with
// non-negative figures.
func FuzzParseConfig(f *testing.F) {
	modeltest.FuzzParseConfig(f, []string{NameRetNet, NameDenseRetNet},
		"testdata/retnet-h2/config.json", "testdata/denseretnet-m2/config.json", "testdata/denseretnet-m2-bin/config.json")
}
