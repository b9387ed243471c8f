package retnet

import (
	"os"
	"testing"
)

// FuzzParseConfig checks that any config.json is parsed or refused, never
// a panic, and that a parsed one validates and estimates its memory with
// non-negative figures.
func FuzzParseConfig(f *testing.F) {
	for _, path := range []string{"testdata/retnet-h2/config.json", "testdata/denseretnet-m2/config.json", "testdata/denseretnet-m2-bin/config.json"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, arch := range []string{NameRetNet, NameDenseRetNet} {
			c, err := ParseConfig(arch, data)
			if err != nil {
				continue
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("ParseConfig accepted a config that Validate refuses: %v", err)
			}
			e := c.EstimateMemory()
			if e.Parameters < 0 || e.WeightBytes < 0 || e.StateBytes < 0 || e.InferenceBytes(2, 100) < 0 || e.TrainingBytes(2, 100, 2) < 0 {
				t.Fatalf("negative estimate %+v", e)
			}
		}
	})
}
