package checkpoint

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/densessm/densessm/api"
)

// progressStep is the least number of bytes loaded between two calls of a
// progress function (besides the first and the last call).
const progressStep = 4 << 20

// maxNamed bounds the tensors a load error names for each kind of problem.
const maxNamed = 3

// loadSettings tune Checkpoint.load.
type loadSettings struct {
	// what names the parameters in errors ("the 32 parameters of the
	// mamba model"); empty means "N parameters".
	what string
	// hints adds to a mismatch error what to check in config.json.
	hints bool
	// checkExtra makes a checkpoint tensor that no parameter takes an error,
	// unless expected (which may be nil) reports it as expected.
	checkExtra bool
	expected   func(name string) bool
	// checkFinite makes a NaN or infinite value an error.
	checkFinite bool
	// progress, if not nil, is told the bytes of tensor data loaded so far
	// and in all; see LoadOptions.Progress.
	progress func(done, total int64)
}

// load checks that params and the checkpoint fit together (checkFit), then
// uploads each parameter's tensor (see upload), checking ctx between
// tensors and, with s.checkFinite, the values uploaded.
func (c *Checkpoint) load(ctx context.Context, params []api.Parameter, s loadSettings) error {
	if c.files == nil {
		return fmt.Errorf("checkpoint %s: load: %w", c.path, os.ErrClosed)
	}
	if err := c.checkFit(params, s); err != nil {
		return err
	}
	var total, done, reported int64
	for _, p := range params {
		total += c.tensors[c.byName[p.Name]].Size
	}
	if s.progress != nil {
		s.progress(0, total)
	}
	u := uploader{checkFinite: s.checkFinite, staging: map[stagingKey]api.Tensor{}}
	defer u.free()
	for _, p := range params {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("checkpoint %s: load: %w", c.path, err)
		}
		t := c.tensors[c.byName[p.Name]]
		err := guardFault(t.File, func() error { return u.upload(p.Value, t, c.files[t.file].bytes(t)) })
		if err != nil {
			return fmt.Errorf("checkpoint %s: load tensor %q: %w", c.path, p.Name, err)
		}
		done += t.Size
		if s.progress != nil && (done-reported >= progressStep || (done == total && done != reported)) {
			s.progress(done, total)
			reported = done
		}
	}
	return nil
}

// uploader fills parameters from stored tensors. An F16 or BF16 tensor
// for an F32 parameter is uploaded as it is stored, into a temporary
// tensor of its dtype on the parameter's backend, and widened there with
// Convert: a device receives half the bytes, and the values are the ones
// the host would widen to, bit for bit. Other dtypes that differ from the
// parameter's are converted on the host, through float32.
type uploader struct {
	// checkFinite makes a NaN or infinite value an error.
	checkFinite bool
	conv        converter
	// staging holds the temporary half tensors, one per backend, dtype and
	// shape, reused by the tensors of that shape (a model's layers repeat
	// theirs), so that a load holds about one layer's worth of them, not
	// the whole model's (which a CPU backend would leave to the garbage
	// collector).
	staging map[stagingKey]api.Tensor
}

// stagingKey identifies a temporary tensor of uploader.staging.
type stagingKey struct {
	b     api.Backend
	dtype api.DType
	shape string
}

// upload fills param from raw, the stored bytes of tensor t (of param's
// shape). With u.checkFinite, the check counts the NaN and infinite values
// of the bytes uploaded: the stored halves when they are widened on the
// backend (widening keeps each value's finiteness), else the converted
// values (a conversion to float32 may overflow to infinity).
func (u *uploader) upload(param api.Tensor, t TensorInfo, raw []byte) error {
	to := param.DType()
	sent := to // the dtype of the bytes uploaded
	if to == api.F32 && (t.DType == api.F16 || t.DType == api.BF16) {
		sent = t.DType
	} else {
		var err error
		if raw, err = u.conv.convert(to, t.DType, raw); err != nil {
			return err
		}
	}
	if u.checkFinite {
		if nan, inf := countNonFinite(sent, raw); nan+inf > 0 {
			return nonFiniteError(t, to, nan, inf)
		}
	}
	b := param.Backend()
	if sent == to {
		b.Upload(param, raw)
		return nil
	}
	k := stagingKey{b, sent, param.Shape().String()}
	tmp, ok := u.staging[k]
	if !ok {
		tmp = b.Alloc(sent, param.Shape()...)
		u.staging[k] = tmp
	}
	b.Upload(tmp, raw)
	b.Convert(param, tmp)
	return nil
}

// free releases the temporary tensors.
func (u *uploader) free() {
	for k, t := range u.staging {
		k.b.Free(t)
	}
	clear(u.staging)
}

// nonFiniteError describes the NaN and infinite values of tensor t, as
// converted to dtype to.
func nonFiniteError(t TensorInfo, to api.DType, nan, inf int) error {
	var kinds []string
	if nan > 0 {
		kinds = append(kinds, fmt.Sprintf("%d NaN", nan))
	}
	if inf > 0 {
		kinds = append(kinds, fmt.Sprintf("%d infinite", inf))
	}
	conv := ""
	if to != t.DType {
		conv = " as " + to.String()
	}
	return fmt.Errorf("%d of its %d %s values%s are not finite (%s); pass AllowNonFinite, or --allow-nonfinite on the command line, to load them anyway: %w",
		nan+inf, t.Shape.NumElements(), t.DType, conv, strings.Join(kinds, ", "), api.ErrCorrupt)
}

// checkFit checks, before anything is written, that every parameter has a
// tensor of its shape and of a dtype that converts to its own and, with
// s.checkExtra, that every tensor is taken by a parameter or expected. The
// error counts each kind of problem, names the first few tensors of each,
// and wraps api.ErrNotFound, api.ErrShape, api.ErrDType or api.ErrConfig
// (tensors that are not parameters) for each kind present.
func (c *Checkpoint) checkFit(params []api.Parameter, s loadSettings) error {
	var missing, misshapen, badDType []string
	for _, p := range params {
		i, ok := c.byName[p.Name]
		if !ok {
			missing = append(missing, fmt.Sprintf("%q", truncate(p.Name)))
			continue
		}
		t, to := c.tensors[i], p.Value.DType()
		switch {
		case !t.Shape.Equal(p.Value.Shape()):
			misshapen = append(misshapen, fmt.Sprintf("%q is %s%v, the parameter %s%v", truncate(p.Name), t.DType, t.Shape, to, p.Value.Shape()))
		case t.DType != to && !(decodable(t.DType) && encodable(to)):
			badDType = append(badDType, fmt.Sprintf("%q is %s, which cannot fill a %s parameter", truncate(p.Name), t.DType, to))
		}
	}
	var extra []string
	if s.checkExtra {
		extra = c.extraTensors(params, s.expected)
	}
	var parts []error
	hint := func(h string) string {
		if !s.hints {
			return ""
		}
		return " (" + h + ")"
	}
	if len(extra) > 0 {
		parts = append(parts, fmt.Errorf("%s of the model: %s%s: %w",
			count(len(extra), "checkpoint tensor is not a parameter", "checkpoint tensors are not parameters"), listed(extra, ", "),
			hint("does config.json's num_hidden_layers match the weights? pass AllowExtra, or --allow-extra on the command line, to ignore them"), api.ErrConfig))
	}
	if len(missing) > 0 {
		parts = append(parts, fmt.Errorf("%s no tensor in the checkpoint: %s%s: %w",
			count(len(missing), "parameter has", "parameters have"), listed(missing, ", "),
			hint("does config.json's num_hidden_layers (or tie_word_embeddings) match the weights?"), api.ErrNotFound))
	}
	if len(misshapen) > 0 {
		parts = append(parts, fmt.Errorf("%s the wrong shape: %s%s: %w",
			count(len(misshapen), "tensor has", "tensors have"), listed(misshapen, "; "),
			hint("do config.json's sizes match the weights?"), api.ErrShape))
	}
	if len(badDType) > 0 {
		parts = append(parts, fmt.Errorf("%s the wrong dtype: %s: %w",
			count(len(badDType), "tensor has", "tensors have"), listed(badDType, "; "), api.ErrDType))
	}
	if len(parts) == 0 {
		return nil
	}
	what := s.what
	if what == "" {
		what = count(len(params), "parameter", "parameters")
	}
	return &fitError{prefix: fmt.Sprintf("checkpoint %s does not fit %s", c.path, what), parts: parts}
}

// extraTensors returns the names of the checkpoint's tensors, in name
// order, that no parameter takes and that are not expected: neither
// expected(name) (when expected is not nil) nor a tied copy, a tensor that
// shares its stored bytes and its shape with a tensor a parameter takes (as
// torch.save stores tied weights, such as an lm_head tied to the
// embeddings: one storage, two names).
func (c *Checkpoint) extraTensors(params []api.Parameter, expected func(string) bool) []string {
	type place struct {
		file         int
		offset, size int64
		dtype        api.DType
	}
	taken := make(map[string]bool, len(params))
	stored := map[place][]api.Shape{}
	for _, p := range params {
		taken[p.Name] = true
		if i, ok := c.byName[p.Name]; ok {
			if t := c.tensors[i]; t.Offset >= 0 && t.Size > 0 {
				k := place{t.file, t.Offset, t.Size, t.DType}
				stored[k] = append(stored[k], t.Shape)
			}
		}
	}
	var extra []string
tensors:
	for _, t := range c.tensors {
		if taken[t.Name] || expected != nil && expected(t.Name) {
			continue
		}
		if t.Offset >= 0 {
			for _, shape := range stored[place{t.file, t.Offset, t.Size, t.DType}] {
				if shape.Equal(t.Shape) {
					continue tensors
				}
			}
		}
		extra = append(extra, fmt.Sprintf("%q", truncate(t.Name)))
	}
	return extra
}

// fitError is the error of checkFit: one line, a prefix and the kinds of
// problem found, each wrapping its sentinel.
type fitError struct {
	prefix string
	parts  []error
}

func (e *fitError) Error() string {
	var b strings.Builder
	b.WriteString(e.prefix)
	for i, p := range e.parts {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; and ")
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems, so that errors.Is finds each one's sentinel.
func (e *fitError) Unwrap() []error { return e.parts }

// count formats n with the singular or plural phrase.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// listed joins the first maxNamed items with sep and says how many more
// there are.
func listed(items []string, sep string) string {
	if len(items) <= maxNamed {
		return strings.Join(items, sep)
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:maxNamed], sep), len(items)-maxNamed)
}
