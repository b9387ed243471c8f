package api

import (
	"context"
	"fmt"
)

// The helpers below implement the wire-safe parameter methods of Model
// (Params, ReadParams, WriteParams) for a model that holds its parameters
// as tensors of this process.

// ParamInfos describes ps.
func ParamInfos(ps []Parameter) []ParamInfo {
	out := make([]ParamInfo, len(ps))
	for i, p := range ps {
		out[i] = ParamInfo{Name: p.Name, DType: p.Value.DType(), Shape: p.Value.Shape().Clone()}
	}
	return out
}

// ReadParameters downloads the parameters of ps named by names (all of
// them, in order, when names is empty). An unknown name wraps ErrNotFound.
func ReadParameters(ctx context.Context, ps []Parameter, names []string) (_ []HostTensor, err error) {
	defer Recover(&err)
	pick := ps
	if len(names) > 0 {
		index := paramIndex(ps)
		pick = make([]Parameter, len(names))
		for i, name := range names {
			j, ok := index[name]
			if !ok {
				return nil, fmt.Errorf("parameter %q: %w", name, ErrNotFound)
			}
			pick[i] = ps[j]
		}
	}
	out := make([]HostTensor, len(pick))
	for i, p := range pick {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := p.Value
		out[i] = HostTensor{Name: p.Name, DType: t.DType(), Shape: t.Shape().Clone(), Data: make([]byte, t.DType().Bytes(t.Shape().NumElements()))}
		t.Backend().Download(out[i].Data, t)
	}
	return out, nil
}

// WriteParameters uploads values into the parameters of ps of the same
// names. Every value is checked (name, dtype, shape, size) before any is
// written.
func WriteParameters(ctx context.Context, ps []Parameter, values []HostTensor) (err error) {
	defer Recover(&err)
	index := paramIndex(ps)
	for _, v := range values {
		j, ok := index[v.Name]
		if !ok {
			return fmt.Errorf("parameter %q: %w", v.Name, ErrNotFound)
		}
		t := ps[j].Value
		if v.DType != t.DType() {
			return fmt.Errorf("parameter %q is %s, value is %s: %w", v.Name, t.DType(), v.DType, ErrDType)
		}
		if !v.Shape.Equal(t.Shape()) || len(v.Data) != t.DType().Bytes(t.Shape().NumElements()) {
			return fmt.Errorf("parameter %q has shape %v, value has %v (%d bytes): %w", v.Name, t.Shape(), v.Shape, len(v.Data), ErrShape)
		}
	}
	for _, v := range values {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := ps[index[v.Name]].Value
		t.Backend().Upload(t, v.Data)
	}
	return nil
}

func paramIndex(ps []Parameter) map[string]int {
	index := make(map[string]int, len(ps))
	for i, p := range ps {
		index[p.Name] = i
	}
	return index
}
