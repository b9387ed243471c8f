package cfgcheck

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

func TestChecks(t *testing.T) {
	for _, tc := range []struct {
		check func(k *Checker)
		want  string // "" for no error
	}{
		{func(k *Checker) { k.Int("n", 3, 1, 4) }, ""},
		{func(k *Checker) { k.Int("n", 0, 1, 4) }, "cfg: n = 0: must be > 0"},
		{func(k *Checker) { k.Int("n", -1, 0, 4) }, "cfg: n = -1: must be >= 0"},
		{func(k *Checker) { k.Int("n", 5, 1, 4) }, "cfg: n = 5: must be <= 4"},
		{func(k *Checker) { k.Float("x", 0.5, 0, 1, true) }, ""},
		{func(k *Checker) { k.Float("x", 0, 0, 1, true) }, "x = 0: must be > 0"},
		{func(k *Checker) { k.Float("x", 1e-50, 0, 1, true) }, "x = 1e-50: must be > 0"}, // 0 as a float32
		{func(k *Checker) { k.Float("x", 0, 0, 1, false) }, ""},
		{func(k *Checker) { k.Float("x", -1, 0, 1, false) }, "x = -1: must be >= 0"},
		{func(k *Checker) { k.Float("x", 2, 0, 1, false) }, "x = 2: must be <= 1"},
		{func(k *Checker) { k.Float("x", 1e39, 0, math.Inf(1), false) }, "must be <= 3.4028234663852886e+38"},
		{func(k *Checker) { k.Float("x", math.NaN(), 0, 1, false) }, "x = NaN: must be a finite number"},
		{func(k *Checker) { k.Float("x", math.Inf(-1), 0, 1, false) }, "x = -Inf: must be a finite number"},
		{func(k *Checker) { k.Epsilon("eps", 1e-6) }, ""},
		{func(k *Checker) { k.Epsilon("eps", 1.5) }, "eps = 1.5: must be <= 1"},
		{func(k *Checker) { k.Fraction("p", 0) }, ""},
		{func(k *Checker) { k.Fraction("p", 1) }, "p = 1: must be < 1"},
		{func(k *Checker) { k.OneOf("s", "b", "a", "b") }, ""},
		{func(k *Checker) { k.OneOf("s", "c", "a", "b") }, `s = "c": must be one of ["a" "b"]`},
		{func(k *Checker) { k.Int("first", 0, 1, 2); k.Int("second", 0, 1, 2) }, "first"},
		{func(k *Checker) {
			k.Unused(map[string]json.RawMessage{"dropout": json.RawMessage("0.1"), "initializer_range": json.RawMessage("null")})
		}, ""},
		{func(k *Checker) { k.Unused(map[string]json.RawMessage{"drop_path_rate": json.RawMessage("1.5")}) }, "drop_path_rate = 1.5"},
		{func(k *Checker) { k.Unused(map[string]json.RawMessage{"initializer_range": json.RawMessage(`"x"`)}) }, `initializer_range = "x": must be a number`},
	} {
		k := New("cfg")
		tc.check(k)
		err := k.Err()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("unexpected %v", err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, api.ErrConfig)):
			t.Errorf("got %v, want an invalid config error with %q", err, tc.want)
		}
	}
}

func TestRename(t *testing.T) {
	k := New("dense config")
	k.Int("m", -1, 0, 4)
	err := RenameMap(fmtWrap(k.Err()), "mamba config", map[string]string{"m": "dense.m"})
	if err.Error() != "mamba config: dense.m = -1: must be >= 0: invalid config" || !errors.Is(err, api.ErrConfig) {
		t.Errorf("renamed: %v", err)
	}
	other := errors.New("other")
	if RenameMap(other, "x", nil) != other {
		t.Error("Rename changed an error without a field")
	}
}

// fmtWrap wraps err once, as callers may before it is renamed.
func fmtWrap(err error) error { return &wrapped{err} }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
