package hgrn

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

// ref is a float64 reference of the model, written from the maths of the
// package documentation as loops over slices: one token at a time, each
// layer's state carried as a vector. It shares no code with the model; it
// reads the float32 parameters (exact in float64) through ReadParams, by
// name.
type ref struct {
	cfg *Config
	p   map[string][]float64
}

// newRef reads m's parameters into a reference.
func newRef(t testing.TB, m *Model) *ref {
	t.Helper()
	hts, err := m.ReadParams(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &ref{cfg: m.cfg, p: map[string][]float64{}}
	for _, ht := range hts {
		f32 := make([]float32, ht.Shape.NumElements())
		if err := api.DecodeFloat32(f32, ht.DType, ht.Data); err != nil {
			t.Fatal(err)
		}
		f64 := make([]float64, len(f32))
		for i, v := range f32 {
			f64[i] = float64(v)
		}
		r.p[ht.Name] = f64
	}
	return r
}

// w returns the parameter called name; a missing one is a bug of the test
// or the model's names, so it panics.
func (r *ref) w(name string) []float64 {
	v, ok := r.p[name]
	if !ok {
		panic("reference: no parameter " + name)
	}
	return v
}

// linear returns x W^T for W [out, len(x)] stored row-major.
func linear(w, x []float64) []float64 {
	in := len(x)
	out := make([]float64, len(w)/in)
	for o := range out {
		var acc float64
		for i, xi := range x {
			acc += w[o*in+i] * xi
		}
		out[o] = acc
	}
	return out
}

func rmsNorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * r * w[i]
	}
	return out
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
func silu(x float64) float64    { return x * sigmoid(x) }

// logits returns the logits [B][T][V] of ids.
func (r *ref) logits(ids [][]int32) [][][]float64 {
	c := r.cfg
	D, L, V := c.HiddenSize, c.NumHiddenLayers, c.VocabSize
	eps := float64(c.RMSNormEps)
	emb := r.w("model.embed_tokens.weight")
	head := emb
	if !c.TieWordEmbeddings {
		head = r.w("lm_head.weight")
	}
	out := make([][][]float64, len(ids))
	for bi, seq := range ids {
		s := make([][]float64, L) // s^l_{t-1}
		for l := range s {
			s[l] = make([]float64, D)
		}
		for _, id := range seq {
			h := append([]float64(nil), emb[int(id)*D:(int(id)+1)*D]...)
			for l := range L {
				lp := fmt.Sprintf("model.layers.%d.", l)
				lb := float64(l) / float64(L) * float64(c.LowerBoundMax)
				u := rmsNorm(h, r.w(lp+"attn_norm.weight"), eps)
				zf := linear(r.w(lp+"attn.f_proj.weight"), u)
				zi := linear(r.w(lp+"attn.i_proj.weight"), u)
				zg := linear(r.w(lp+"attn.g_proj.weight"), u)
				for d := range D {
					f := lb + (1-lb)*sigmoid(zf[d])
					s[l][d] = f*s[l][d] + (1-f)*silu(zi[d])
				}
				fused := append([]float64(nil), s[l]...)
				for j := 1; j <= min(l, c.DenseM); j++ {
					below := s[l-j] // already at this token
					z := linear(r.w(fmt.Sprintf("%sattn.dense_sel.%d.weight", lp, j)), below)
					for d := range D {
						fused[d] += sigmoid(z[d]) * below[d]
					}
				}
				o := rmsNorm(fused, r.w(lp+"attn.g_norm.weight"), eps)
				for d := range D {
					o[d] *= silu(zg[d])
				}
				for d, v := range linear(r.w(lp+"attn.o_proj.weight"), o) {
					h[d] += v
				}
				x := rmsNorm(h, r.w(lp+"mlp_norm.weight"), eps)
				gate := linear(r.w(lp+"mlp.gate_proj.weight"), x)
				up := linear(r.w(lp+"mlp.up_proj.weight"), x)
				for k := range gate {
					gate[k] = silu(gate[k]) * up[k]
				}
				for d, v := range linear(r.w(lp+"mlp.down_proj.weight"), gate) {
					h[d] += v
				}
			}
			lg := linear(head, rmsNorm(h, r.w("model.norm.weight"), eps))
			if len(lg) != V {
				panic("reference: head width")
			}
			out[bi] = append(out[bi], lg)
		}
	}
	return out
}

// loss returns the mean cross-entropy of batch over the targets that are
// not api.IgnoreIndex (0 when all are).
func (r *ref) loss(batch api.Batch) float64 {
	lg := r.logits(batch.Inputs)
	var sum float64
	n := 0
	for bi, row := range batch.Targets {
		for ti, target := range row {
			if target == api.IgnoreIndex {
				continue
			}
			z := lg[bi][ti]
			hi := math.Inf(-1)
			for _, v := range z {
				hi = max(hi, v)
			}
			var se float64
			for _, v := range z {
				se += math.Exp(v - hi)
			}
			sum += hi + math.Log(se) - z[target]
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
