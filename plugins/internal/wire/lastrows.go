package wire

import (
	"fmt"

	"github.com/densessm/densessm/api"
)

// LastRows returns the logits of the last position of t [B,T,V] as a new
// tensor [B,V] of t's backend: what a prefill that needs only those
// keeps of one that computed them all.
func LastRows(t api.Tensor) (api.Tensor, error) {
	s := t.Shape()
	if s.Rank() != 3 || s[1] < 1 || t.DType() != api.F32 {
		return nil, fmt.Errorf("last rows of %s%v: want F32 [B,T,V] with T >= 1: %w", t.DType(), s, api.ErrShape)
	}
	B, T, V := s[0], s[1], s[2]
	all := api.Float32s(t)
	last := make([]float32, 0, B*V)
	for b := range B {
		last = append(last, all[((b*T)+T-1)*V:][:V]...)
	}
	out := t.Backend().Alloc(api.F32, B, V)
	data := make([]byte, 4*len(last))
	if err := api.EncodeFloat32(data, api.F32, last); err != nil {
		return nil, err
	}
	out.Backend().Upload(out, data)
	return out, nil
}
