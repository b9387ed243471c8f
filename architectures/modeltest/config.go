package modeltest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// FieldDomain is a config field and values outside its domain, for
// CheckFieldDomains. Domain makes one.
type FieldDomain struct {
	arch, base, path string   // the architecture, the valid config and the field's path
	values           []string // raw JSON values outside the domain
	field            string   // the field the error names
	err              error    // the error it wraps
}

// Domain returns the values outside the domain of the field at path
// (dotted for nested objects, see WithField) of the config.json base, a
// valid config of the registered architecture arch. The error must wrap
// api.ErrConfig and name path, unless Naming or Wrapping say otherwise.
func Domain(arch, base, path string, values ...string) FieldDomain {
	return FieldDomain{arch: arch, base: base, path: path, values: values, field: path, err: api.ErrConfig}
}

// Naming returns d with the error naming field instead of the path (a
// field the value conflicts with, or the name of a nested field).
func (d FieldDomain) Naming(field string) FieldDomain {
	d.field = field
	return d
}

// Wrapping returns d with the error wrapping err instead of api.ErrConfig.
func (d FieldDomain) Wrapping(err error) FieldDomain {
	d.err = err
	return d
}

// CheckFieldDomains checks that the base config of every domain parses,
// and that each of its values, set at its path, makes the registered
// architecture's ParseConfig fail with an error that wraps the domain's
// error and names its field as the file spells it.
func CheckFieldDomains(t *testing.T, domains ...FieldDomain) {
	t.Helper()
	parse := func(arch string, data []byte) error {
		t.Helper()
		a, err := api.LookupArchitecture(arch)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.ParseConfig(data)
		return err
	}
	bases := map[[2]string]bool{}
	for _, d := range domains {
		if k := [2]string{d.arch, d.base}; !bases[k] {
			bases[k] = true
			if err := parse(d.arch, []byte(d.base)); err != nil {
				t.Fatalf("base config %s: %v", d.base, err)
			}
		}
	}
	for _, d := range domains {
		for _, v := range d.values {
			err := parse(d.arch, WithField(t, d.base, d.path, v))
			if !errors.Is(err, d.err) || !strings.Contains(err.Error(), d.field) {
				t.Errorf("%s %s = %s: got %v, want an error wrapping %q that names %s", d.arch, d.path, v, err, d.err, d.field)
			}
		}
	}
}

// CheckCommittedConfigs checks that the default config of every one of the
// registered architectures archs validates, and that every committed
// config.json of a model under testdata/ and every file matching bench in
// the repository's bench/configs/ parses with the architecture archOf
// names for its path. There must be configs under testdata/.
func CheckCommittedConfigs(t *testing.T, archs []string, bench string, archOf func(path string) string) {
	t.Helper()
	for _, name := range archs {
		a, err := api.LookupArchitecture(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.DefaultConfig().Validate(); err != nil {
			t.Errorf("default %s: %v", name, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*", "config.json"))
	benches, _ := filepath.Glob(filepath.Join("..", "..", "bench", "configs", bench))
	if len(files) == 0 {
		t.Fatal("no fixture configs")
	}
	for _, f := range append(files, benches...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		a, err := api.LookupArchitecture(archOf(f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.ParseConfig(data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// FuzzParseConfig fuzzes the ParseConfig of the registered architectures
// archs, seeded with the files seeds: any config.json is parsed or
// refused, never a panic, and a parsed one validates and estimates its
// memory with non-negative figures.
func FuzzParseConfig(f *testing.F, archs []string, seeds ...string) {
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	parsers := make([]api.Architecture, len(archs))
	for i, name := range archs {
		a, err := api.LookupArchitecture(name)
		if err != nil {
			f.Fatal(err)
		}
		parsers[i] = a
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, a := range parsers {
			c, err := a.ParseConfig(data)
			if err != nil {
				continue
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("%s: ParseConfig accepted a config that Validate refuses: %v", a.Name(), err)
			}
			e, ok := api.EstimateMemory(c)
			if !ok {
				t.Fatalf("%s: the config estimates no memory", a.Name())
			}
			CheckEstimateNonNegative(t, a.Name(), e, 2, 100)
		}
	})
}
