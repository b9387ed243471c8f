// Package cfgcheck checks the values of model configurations against their
// domains and reports the first one outside it as a *FieldError naming the
// JSON field, so that every architecture words these errors alike.
package cfgcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/densessm/densessm/api"
)

// Bounds shared by the architectures. They keep every product of sizes
// that a model computes (parameter shapes, element counts) far inside int,
// and token ids inside int32.
const (
	MaxVocab  = math.MaxInt32 // token ids are int32
	MaxModel  = 1 << 20       // the residual width d (hidden_size)
	MaxInner  = 1 << 22       // inner widths: Mamba's d_inner, RetNet's value, key and FFN widths
	MaxLayers = 1 << 16       // num_hidden_layers, and the dense links' m
	MaxRatio  = 1 << 20       // bottleneck ratios of the dense gates
)

// FieldError is a configuration value outside its domain. It wraps
// api.ErrConfig; Error() reads "mamba config: time_step_min = -5: must be
// > 0: invalid config".
type FieldError struct {
	Prefix string // the configuration ("mamba config")
	Field  string // the JSON field as the user wrote it ("time_step_min", "ssm_cfg.dt_min")
	Value  string // the value, formatted
	Rule   string // the domain it is outside ("must be > 0")
}

// Error reads "prefix: field = value: rule: invalid config".
func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s = %s: %s: %v", e.Prefix, e.Field, e.Value, e.Rule, api.ErrConfig)
}

// Unwrap makes errors.Is(err, api.ErrConfig) true.
func (e *FieldError) Unwrap() error { return api.ErrConfig }

// Rename returns a copy of the *FieldError in err's chain (without what
// wraps it) with its field renamed, and its prefix replaced when prefix is
// not empty: rename maps the field as Validate names it to the name the
// user wrote (return it unchanged to keep it). An error without a
// *FieldError is returned as it is.
func Rename(err error, prefix string, rename func(field string) string) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	out := *fe
	if prefix != "" {
		out.Prefix = prefix
	}
	out.Field = rename(fe.Field)
	return &out
}

// RenameMap is Rename with a map; fields not in names keep their name.
func RenameMap(err error, prefix string, names map[string]string) error {
	return Rename(err, prefix, func(f string) string {
		if n, ok := names[f]; ok {
			return n
		}
		return f
	})
}

// Checker records the first value found outside its domain; the checks
// after it do nothing.
type Checker struct {
	prefix string
	err    error
}

// New returns a Checker whose errors start with prefix ("retnet config").
func New(prefix string) *Checker { return &Checker{prefix: prefix} }

// Err returns the first error, or nil.
func (c *Checker) Err() error { return c.err }

// OK reports whether no check has failed yet.
func (c *Checker) OK() bool { return c.err == nil }

// Fail records that field's value is outside its domain, described by the
// rule format and args, unless an error is already recorded.
func (c *Checker) Fail(field string, value any, rule string, args ...any) {
	if c.err != nil {
		return
	}
	var v string
	switch x := value.(type) {
	case float64:
		v = strconv.FormatFloat(x, 'g', -1, 64)
	case api.ConfigFloat:
		v = strconv.FormatFloat(float64(x), 'g', -1, 64)
	case string:
		v = strconv.Quote(x)
	case json.RawMessage:
		v = string(x)
	default:
		v = fmt.Sprint(value)
	}
	c.err = &FieldError{Prefix: c.prefix, Field: field, Value: v, Rule: fmt.Sprintf(rule, args...)}
}

// Int checks lo <= v <= hi.
func (c *Checker) Int(field string, v, lo, hi int) {
	switch {
	case v < lo && lo == 1:
		c.Fail(field, v, "must be > 0")
	case v < lo:
		c.Fail(field, v, "must be >= %d", lo)
	case v > hi:
		c.Fail(field, v, "must be <= %d", hi)
	}
}

// Float checks that v is a finite number in [lo, hi] (or (lo, hi] when
// openLo) that a float32 holds without becoming infinite (or, with
// openLo, zero).
func (c *Checker) Float(field string, v, lo, hi float64, openLo bool) {
	f := float32(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		c.Fail(field, v, "must be a finite number")
	case openLo && !(v > lo && (lo != 0 || f > 0)):
		c.Fail(field, v, "must be > %g", lo)
	case !openLo && !(v >= lo):
		c.Fail(field, v, "must be >= %g", lo)
	case v > hi || math.IsInf(float64(f), 0):
		c.Fail(field, v, "must be <= %g", min(hi, math.MaxFloat32))
	}
}

// Epsilon checks a norm's epsilon: 0 < eps <= 1, and not zero as a
// float32 (the kernels add it in float32).
func (c *Checker) Epsilon(field string, v float64) { c.Float(field, v, 0, 1, true) }

// Fraction checks a rate such as a dropout probability: 0 <= v < 1.
func (c *Checker) Fraction(field string, v float64) {
	if v >= 1 {
		c.Fail(field, v, "must be < 1")
		return
	}
	c.Float(field, v, 0, 1, false)
}

// OneOf checks that v is one of the allowed strings.
func (c *Checker) OneOf(field, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.Fail(field, v, "must be one of %q", allowed)
}

// Unused checks the fields of a config.json that the toolkit reads past
// (they change nothing it computes) but whose value outside its domain
// marks a broken file: initializer_range >= 0, and the dropout rates in
// [0,1). Each is checked when present and not null.
func (c *Checker) Unused(raw map[string]json.RawMessage) {
	for _, f := range []struct {
		name     string
		fraction bool
	}{
		{"initializer_range", false},
		{"dropout", true}, {"attention_dropout", true}, {"activation_dropout", true},
		{"hidden_dropout", true}, {"drop_path_rate", true},
	} {
		r, ok := raw[f.name]
		if !ok || string(r) == "null" || !c.OK() {
			continue
		}
		var v float64
		if err := json.Unmarshal(r, &v); err != nil {
			c.Fail(f.name, r, "must be a number")
			continue
		}
		if f.fraction {
			c.Fraction(f.name, v)
		} else {
			c.Float(f.name, v, 0, math.MaxFloat32, false)
		}
	}
}
