package cpu

import "github.com/densessm/densessm/api"

// seqRank panics with ErrShape unless t has the given rank, and returns its
// shape. The sequence kernels (conv, scan, rotary, retention) call it before
// reading sizes out of a shape.
func seqRank(op, what string, t *Tensor, rank int) api.Shape {
	if t.shape.Rank() != rank {
		api.Panicf(api.ErrShape, "%s: %s has shape %v, want rank %d", op, what, t.shape, rank)
	}
	return t.shape
}

// seqGrain returns how many work items of the given cost (in elements
// touched) make one part worth a goroutine.
func seqGrain(cost int) int { return max(1, minGrain/max(cost, 1)) }

// convDims are the sizes of a causal convolution: batch, time, channels and
// kernel width.
type convDims struct{ B, T, C, K int }

// convInputs checks x [B,T,C], w [C,K] (K >= 1) and, when not nil, prev
// [B,K-1,C], and returns the sizes.
func (b *Backend) convInputs(op string, x, w, prev *Tensor) convDims {
	xs := seqRank(op, "x", x, 3)
	ws := seqRank(op, "w", w, 2)
	d := convDims{B: xs[0], T: xs[1], C: xs[2], K: ws[1]}
	if ws[0] != d.C || d.K < 1 {
		api.Panicf(api.ErrShape, "%s: w has shape %v, want [%d K] with K >= 1 for x %v", op, ws, d.C, xs)
	}
	if prev != nil {
		wantShape(op, "prev", prev, d.B, d.K-1, d.C)
	}
	return d
}

// convRow returns row i of xx[b] = prev[b] followed by x[b] along time, a
// slice of C values, or nil for a row of the zero prefix (prev nil).
func convRow(d convDims, x, prev []float32, b, i int) []float32 {
	if i >= d.K-1 {
		r := b*d.T + i - (d.K - 1)
		return x[r*d.C : (r+1)*d.C]
	}
	if prev == nil {
		return nil
	}
	r := b*(d.K-1) + i
	return prev[r*d.C : (r+1)*d.C]
}

// convKernels recycles the [K,C] copies of the weights of CausalConv1d.
var convKernels floatPool

// convKernelKC stores w [C,K] as [K,C] in wt, so that the inner loops over
// channels read contiguous memory.
func convKernelKC(wt, w []float32, c, k int) {
	wt = wt[:len(w)]
	for i := range c {
		for j := range k {
			wt[j*c+i] = w[i*k+j]
		}
	}
}

// CausalConv1d computes the depthwise causal convolution with channels last
// (see api.Kernels): dst[b,t,c] = bias[c] + sum_k w[c,k] * xx[b,t+k,c],
// where xx is prev (or K-1 zero rows) followed by x. Work is split over the
// B*T output rows.
func (b *Backend) CausalConv1d(dst, x, w, bias, prev api.Tensor) {
	const op = "CausalConv1d"
	xt, wt, out := b.f32(x, op), b.f32(w, op), b.f32(dst, op)
	bt, pt := b.f32OrNil(bias, op), b.f32OrNil(prev, op)
	d := b.convInputs(op, xt, wt, pt)
	wantShape(op, "dst", out, d.B, d.T, d.C)
	if bt != nil {
		wantShape(op, "bias", bt, d.C)
	}
	var pv []float32
	if pt != nil {
		pv = pt.f32
	}
	t := convTasks.get()
	*t = convTask{d: d, dst: out.f32, x: xt.f32, w: wt.f32, prev: pv}
	if bt != nil {
		t.bias = bt.f32
	}
	var wkc *[]float32
	if d.B*d.T > convDirectRows {
		wkc = convKernels.get(len(wt.f32))
		convKernelKC(*wkc, wt.f32, d.C, d.K)
		t.wkc = *wkc
	}
	b.run(d.B*d.T, seqGrain(d.C*d.K), t)
	convTasks.put(t)
	if wkc != nil {
		convKernels.put(wkc)
	}
}

// convDirectRows is the most output rows for which CausalConv1d reads the
// weights as they are, [C,K], rather than first transposing them to
// [K,C]: the transposition costs about one row's work, which a decode step
// (one row per sequence) would pay for every token.
const convDirectRows = 2

// convTask computes rows of CausalConv1d's output dst [B*T][C] from x,
// prev (nil for zeros), the weights w [C,K] (read as wkc [K,C] when that
// is not nil) and bias (nil for none).
type convTask struct {
	d                          convDims
	dst, x, prev, w, wkc, bias []float32
}

var convTasks taskPool[convTask]

func (t *convTask) run(lo, hi int) {
	d := t.d
	for r := lo; r < hi; r++ {
		bi, tt := r/d.T, r%d.T
		o := t.dst[r*d.C : (r+1)*d.C]
		if t.bias != nil {
			copy(o, t.bias)
		} else {
			clear(o)
		}
		for k := range d.K {
			src := convRow(d, t.x, t.prev, bi, tt+k)
			if src == nil {
				continue
			}
			if t.wkc == nil { // the same sums, reading w [C,K] with stride K
				w := t.w[k:]
				for c, v := range src {
					o[c] += w[c*d.K] * v
				}
				continue
			}
			wk := t.wkc[k*d.C : (k+1)*d.C]
			for c, v := range src {
				o[c] += wk[c] * v
			}
		}
	}
}

// CausalConv1dGrad sets dx [B,T,C], dw [C,K], dbias [C] and dprev
// [B,K-1,C] (each optional) from dy [B,T,C]. dprev is the gradient with
// respect to the K-1 rows before t = 0 and may be asked for even when prev
// is nil (zeros). dx and dprev are split over time rows; dw and dbias, sums
// over batch and time, are split over channels and summed in float64.
func (b *Backend) CausalConv1dGrad(dx, dw, dbias, dprev, x, w, prev, dy api.Tensor) {
	const op = "CausalConv1dGrad"
	xt, wt, dyt := b.f32(x, op), b.f32(w, op), b.f32(dy, op)
	pt := b.f32OrNil(prev, op)
	d := b.convInputs(op, xt, wt, pt)
	wantShape(op, "dy", dyt, d.B, d.T, d.C)
	dxt, dwt := b.f32OrNil(dx, op), b.f32OrNil(dw, op)
	dbt, dpt := b.f32OrNil(dbias, op), b.f32OrNil(dprev, op)
	if dxt != nil {
		wantShape(op, "dx", dxt, d.B, d.T, d.C)
	}
	if dwt != nil {
		wantShape(op, "dw", dwt, d.C, d.K)
	}
	if dbt != nil {
		wantShape(op, "dbias", dbt, d.C)
	}
	if dpt != nil {
		wantShape(op, "dprev", dpt, d.B, d.K-1, d.C)
	}
	if dxt != nil || dpt != nil {
		b.convInputGrad(d, dxt, dpt, wt.f32, dyt.f32)
	}
	if dwt != nil || dbt != nil {
		var pv []float32
		if pt != nil {
			pv = pt.f32
		}
		b.convWeightGrad(d, dwt, dbt, xt.f32, pv, dyt.f32)
	}
}

// convInputGrad sets the gradient of each row i of xx (prev rows then x
// rows): dxx[b,i,c] = sum_k w[c,k] * dy[b,i-k,c] over 0 <= i-k < T.
func (b *Backend) convInputGrad(d convDims, dx, dprev *Tensor, w, dy []float32) {
	buf := convKernels.get(len(w))
	defer convKernels.put(buf)
	wkc := *buf
	convKernelKC(wkc, w, d.C, d.K)
	rows := d.T + d.K - 1
	b.parallelGrain(d.B*rows, seqGrain(d.C*d.K), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			bi, i := r/rows, r%rows
			var g []float32
			switch {
			case i >= d.K-1 && dx != nil:
				j := bi*d.T + i - (d.K - 1)
				g = dx.f32[j*d.C : (j+1)*d.C]
			case i < d.K-1 && dprev != nil:
				j := bi*(d.K-1) + i
				g = dprev.f32[j*d.C : (j+1)*d.C]
			default:
				continue
			}
			clear(g)
			for k := range d.K {
				t := i - k
				if t < 0 || t >= d.T {
					continue
				}
				wk := wkc[k*d.C : (k+1)*d.C]
				dyr := dy[(bi*d.T+t)*d.C : (bi*d.T+t+1)*d.C]
				for c, v := range dyr {
					g[c] += wk[c] * v
				}
			}
		}
	})
}

// convWeightGrad sets dw[c,k] = sum_{b,t} dy[b,t,c] xx[b,t+k,c] and
// dbias[c] = sum_{b,t} dy[b,t,c] (either may be nil), accumulating in
// float64 over a channel range per part.
func (b *Backend) convWeightGrad(d convDims, dw, dbias *Tensor, x, prev, dy []float32) {
	b.parallelGrain(d.C, seqGrain(d.B*d.T*(d.K+1)), func(c0, c1 int) {
		n := c1 - c0
		accW := make([]float64, d.K*n) // [K][n]
		accB := make([]float64, n)
		for bi := range d.B {
			for t := range d.T {
				r := bi*d.T + t
				dyr := dy[r*d.C+c0 : r*d.C+c1]
				if dbias != nil {
					for c, v := range dyr {
						accB[c] += float64(v)
					}
				}
				if dw == nil {
					continue
				}
				for k := range d.K {
					src := convRow(d, x, prev, bi, t+k)
					if src == nil {
						continue
					}
					src = src[c0:c1]
					acc := accW[k*n : (k+1)*n]
					for c, v := range dyr {
						acc[c] += float64(v) * float64(src[c])
					}
				}
			}
		}
		if dbias != nil {
			for c, v := range accB {
				dbias.f32[c0+c] = float32(v)
			}
		}
		if dw != nil {
			for c := range n {
				for k := range d.K {
					dw.f32[(c0+c)*d.K+k] = float32(accW[k*n+c])
				}
			}
		}
	})
}
