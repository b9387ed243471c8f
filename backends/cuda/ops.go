package cuda

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// The api.Kernels methods: each checks its arguments as the CPU backend
// does (the CUDA kernels check nothing) and queues a CUDA kernel, a cuBLAS
// GEMM or a copy, or runs on the host (fallback.go).

// launch queues a kernel and panics with the device's error.
func (b *Backend) launch(kernel string, g kernels.Geometry, args ...any) {
	b.check(kernel, b.dev.launch(kernel, g, args...))
}

// Fill sets every element of the F32 tensor dst to v.
func (b *Backend) Fill(dst api.Tensor, v float32) {
	d := b.f32(dst, "fill")
	if n := d.numel(); n > 0 {
		b.check("fill", b.dev.fill32(d.ptr(), math.Float32bits(v), int64(n)))
	}
}

// Copy copies src into dst (same dtype and element count).
func (b *Backend) Copy(dst, src api.Tensor) {
	d, s := b.own(dst), b.own(src)
	if d.dtype != s.dtype {
		api.Panicf(api.ErrDType, "cuda: copy %s%v into %s%v", s.dtype, s.shape, d.dtype, d.shape)
	}
	if d.numel() != s.numel() {
		api.Panicf(api.ErrShape, "cuda: copy %s%v into %s%v", s.dtype, s.shape, d.dtype, d.shape)
	}
	if n := d.nbytes(); n > 0 && d.ptr() != s.ptr() {
		b.check("copy", b.dev.copyDtoD(d.ptr(), s.ptr(), int64(n)))
	}
}

// convertKernels are the conversions with a kernel (convert.cu) taking
// (dst, src, n), by source and destination dtype.
var convertKernels = map[[2]api.DType]string{
	{api.BF16, api.F32}: "ds_convert_bf16_f32",
	{api.F16, api.F32}:  "ds_convert_f16_f32",
	{api.F64, api.F32}:  "ds_convert_f64_f32",
	{api.I32, api.F32}:  "ds_convert_i32_f32",
	{api.I64, api.F32}:  "ds_convert_i64_f32",
	{api.Q8_0, api.F32}: "ds_convert_q8_0_f32",
	{api.F32, api.BF16}: "ds_convert_f32_bf16",
	{api.F32, api.F16}:  "ds_convert_f32_f16",
	{api.F32, api.F64}:  "ds_convert_f32_f64",
	{api.F32, api.Q8_0}: "ds_convert_f32_q8_0",
}

// Convert converts element-wise: a device copy for the same dtype, a
// ds_convert_* kernel between F32 and BF16, F16, F64 or Q8_0 and from I32
// or I64 to F32, and ds_convert_i64_i32 from I64 to I32, whose value out of
// int32's range is read back from the kernel's flag and raised as
// api.ErrOutOfRange. Other pairs are api.ErrUnsupported, as on the CPU
// backend.
func (b *Backend) Convert(dst, src api.Tensor) {
	d, s := b.own(dst), b.own(src)
	if d.numel() != s.numel() {
		api.Panicf(api.ErrShape, "cuda: convert %s%v into %s%v", s.dtype, s.shape, d.dtype, d.shape)
	}
	if d.dtype == s.dtype {
		b.Copy(dst, src)
		return
	}
	n := int64(d.numel())
	if s.dtype == api.I64 && d.dtype == api.I32 {
		if n == 0 {
			return
		}
		flag := b.newFlag()
		defer b.Free(flag)
		b.launch("ds_convert_i64_i32", kernels.ElementGeometry(n), d.ptr(), s.ptr(), n, flag.ptr())
		if i, bad := b.flagged(flag); bad {
			var v [8]byte
			b.download(v[:], s.ptr()+driver.DevicePtr(8*i))
			api.Panicf(api.ErrOutOfRange, "cuda: convert I64 value %d at %d to I32", int64(binary.LittleEndian.Uint64(v[:])), i)
		}
		return
	}
	kernel, ok := convertKernels[[2]api.DType{s.dtype, d.dtype}]
	if !ok {
		api.Panicf(api.ErrUnsupported, "cuda: convert %s to %s", s.dtype, d.dtype)
	}
	if n > 0 {
		b.launch(kernel, kernels.ElementGeometry(n), d.ptr(), s.ptr(), n)
	}
}

// newFlag allocates the 8-byte flag of a kernel that finds a bad argument
// it cannot panic about (an id or target out of range), zeroed: the kernel
// sets it to the index of the first bad row or element any thread saw + 1.
func (b *Backend) newFlag() *Tensor { return b.Alloc(api.U8, 8).(*Tensor) }

// flagged reads flag back (a synchronizing download) and returns the index
// it holds and whether the kernel set it.
func (b *Backend) flagged(flag *Tensor) (int64, bool) {
	var raw [8]byte
	b.download(raw[:], flag.ptr())
	v := binary.LittleEndian.Uint64(raw[:])
	return int64(v) - 1, v != 0
}

// sameShape panics with ErrShape unless a and b have the same shape.
func sameShape(op string, a, b *Tensor) {
	if !a.shape.Equal(b.shape) {
		api.Panicf(api.ErrShape, "cuda: %s: shapes %v and %v differ", op, a.shape, b.shape)
	}
}

// Unary sets dst = op(x) with ds_unary_f32.
func (b *Backend) Unary(op api.UnaryOp, dst, x api.Tensor) {
	d, s := b.f32(dst, "unary"), b.f32(x, "unary")
	sameShape("unary "+op.String(), d, s)
	if op < api.OpNeg || op > api.OpRelu {
		api.Panicf(api.ErrUnsupported, "cuda: unary op %d", op)
	}
	if n := int64(d.numel()); n > 0 {
		b.launch("ds_unary_f32", kernels.ElementGeometry(n), int32(op), d.ptr(), s.ptr(), n)
	}
}

// UnaryGrad sets dx = dy * op'(x) with ds_unary_grad_f32.
func (b *Backend) UnaryGrad(op api.UnaryOp, dx, x, dy api.Tensor) {
	const name = "unary grad"
	g, s, up := b.f32(dx, name), b.f32(x, name), b.f32(dy, name)
	sameShape(name+" "+op.String(), g, s)
	sameShape(name+" "+op.String(), up, s)
	if op < api.OpNeg || op > api.OpRelu {
		api.Panicf(api.ErrUnsupported, "cuda: unary op %d", op)
	}
	if n := int64(g.numel()); n > 0 {
		b.launch("ds_unary_grad_f32", kernels.ElementGeometry(n), int32(op), g.ptr(), s.ptr(), up.ptr(), n)
	}
}

// Affine sets dst = x*scale + shift with ds_affine_f32.
func (b *Backend) Affine(dst, x api.Tensor, scale, shift float32) {
	d, s := b.f32(dst, "affine"), b.f32(x, "affine")
	sameShape("affine", d, s)
	if n := int64(d.numel()); n > 0 {
		b.launch("ds_affine_f32", kernels.ElementGeometry(n), d.ptr(), s.ptr(), n, scale, shift)
	}
}

// Binary sets dst = a op b with broadcasting: ds_binary_same_f32 for
// equal shapes, else ds_binary_f32 with the broadcast plan.
func (b *Backend) Binary(op api.BinaryOp, dst, a, c api.Tensor) {
	d, x, y := b.f32(dst, "binary"), b.f32(a, "binary"), b.f32(c, "binary")
	want, err := api.BroadcastShapes(x.shape, y.shape)
	if err != nil {
		panic(err)
	}
	if !d.shape.Equal(want) {
		api.Panicf(api.ErrShape, "cuda: binary %s: dst has shape %v, want %v", op, d.shape, want)
	}
	if op < api.OpAdd || op > api.OpDiv {
		api.Panicf(api.ErrUnsupported, "cuda: binary op %d", op)
	}
	n := int64(d.numel())
	if n == 0 {
		return
	}
	if x.shape.Equal(y.shape) {
		b.launch("ds_binary_same_f32", kernels.ElementGeometry(n), int32(op), d.ptr(), x.ptr(), y.ptr(), n)
		return
	}
	plan, err := kernels.PlanBroadcast(d.shape, x.shape, y.shape)
	if err != nil {
		b.onHost("Binary (more than 8 broadcast dimensions)", func(cb api.Backend, h *hostCall) {
			cb.Binary(op, h.out(dst), h.in(a), h.in(c))
		})
		return
	}
	b.launch("ds_binary_f32", kernels.ElementGeometry(n), int32(op), d.ptr(), x.ptr(), y.ptr(), n, plan.Bytes())
}

// SumTo sums x over the axes that broadcasting dst to x's shape expands
// with ds_sum_to_f32 (one thread an output, in double); more than 8 kept or
// summed dimensions after merging run on the host.
func (b *Backend) SumTo(dst, x api.Tensor) {
	const op = "sumto"
	d, s := b.f32(dst, op), b.f32(x, op)
	if !sumToShapes(d.shape, s.shape) {
		api.Panicf(api.ErrShape, "cuda: %s: dst %v does not broadcast to x %v", op, d.shape, s.shape)
	}
	switch {
	case d.numel() == 0:
		return
	case s.numel() == 0:
		b.Fill(dst, 0)
		return
	case d.numel() == s.numel():
		b.check(op, b.dev.copyDtoD(d.ptr(), s.ptr(), int64(d.nbytes())))
		return
	}
	plan, err := kernels.PlanSumTo(d.shape, s.shape)
	if err != nil {
		b.onHost("SumTo (more than 8 dimensions)", func(c api.Backend, h *hostCall) { c.SumTo(h.out(dst), h.in(x)) })
		return
	}
	n := plan.Outputs()
	b.launch("ds_sum_to_f32", kernels.ElementGeometry(n), d.ptr(), s.ptr(), n, plan.Summed(), plan.Bytes())
}

// sumToShapes reports whether dst broadcasts to x's shape: it may have
// fewer axes, size 1 where x has any size, and leading axes of size 1
// beyond x's rank (the CPU backend's rule).
func sumToShapes(dst, x api.Shape) bool {
	for len(dst) > len(x) {
		if dst[0] != 1 {
			return false
		}
		dst = dst[1:]
	}
	for k := 1; k <= len(dst); k++ {
		if dd := dst[len(dst)-k]; dd != 1 && dd != x[len(x)-k] {
			return false
		}
	}
	return true
}

// MatMul computes dst = alpha op(a) op(b) + beta dst with cuBLAS, in the
// backend's GEMM precision (Options.GEMM). A BF16 or Q8_0 second operand
// is taken only as the CPU backend takes it (transposed, rank 2: x W^T).
//
// FP32 and TF32: cublasSgemm (strided batched), under TF32 with the
// handle's math mode CUBLAS_TF32_TENSOR_OP_MATH; a BF16 or Q8_0 second
// operand is widened exactly into an F32 scratch tensor of its shape
// (ds_convert_bf16_f32 or ds_convert_q8_0_f32) for this call, then
// multiplied as F32. For Q8_0 this is the product of the dequantized
// weights; the CPU backend's products of up to 8 rows round x to 16 bits a
// block of 32 instead (backendtest's lowTol).
//
// BF16: cublasGemmEx (strided batched) with BF16 operands and float32
// accumulation: an F32 operand is rounded to nearest even into a BF16
// scratch tensor of its shape (ds_convert_f32_bf16) for this call, a BF16
// one is read as it is. A Q8_0 second operand takes the FP32 path.
func (b *Backend) MatMul(dst, a, c api.Tensor, transA, transB bool, alpha, beta float32) {
	const op = "matmul"
	d, x, y := b.f32(dst, op), b.f32(a, op), b.own(c)
	switch y.dtype {
	case api.BF16, api.Q8_0:
		if transA || !transB || len(y.shape) != 2 {
			api.Panicf(api.ErrDType, "cuda: %s: a %s operand %v is taken only as the transposed second operand of rank 2 (x W^T), got transA=%v transB=%v",
				op, y.dtype, y.shape, transA, transB)
		}
	default:
		y = b.f32(c, op)
	}
	dims := api.MatMulShapes("cuda: "+op, d.shape, x.shape, y.shape, transA, transB)
	ra, rb := len(x.shape), len(y.shape)
	m, n, k := dims.M, dims.N, dims.K
	nb := dims.Batch.NumElements()
	if nb == 0 || m == 0 || n == 0 {
		return
	}
	if k == 0 { // op(a) op(b) is zero: dst = beta dst
		if beta == 0 {
			b.Fill(dst, 0)
		} else {
			b.Affine(dst, dst, beta, 0)
		}
		return
	}
	ab, mode := driver.R32F, driver.DefaultMath
	switch {
	case b.gemm == GEMMBF16 && y.dtype != api.Q8_0:
		ab = driver.R16BF
		x = b.converted(x, api.BF16)
		defer b.Free(x)
		if y.dtype == api.F32 {
			y = b.converted(y, api.BF16)
			defer b.Free(y)
		}
	case y.dtype != api.F32:
		y = b.converted(y, api.F32)
		defer b.Free(y)
	}
	if b.gemm == GEMMTF32 {
		mode = driver.TF32Math
	}
	strideA, strideB := int64(m*k), int64(k*n)
	if ra == 2 {
		strideA = 0
	}
	if rb == 2 {
		strideB = 0
	}
	mm := m
	if nb > 1 && strideB == 0 && !transA {
		// A batch of untransposed matrices times one shared matrix is one
		// tall product: the rows of every batch are adjacent.
		mm, nb = m*nb, 1
	}
	g := driver.RowMajor(mm, n, k, transA, transB)
	b.check(op, b.dev.gemm(gemmCall{
		ta: g.TA, tb: g.TB, m: g.M, n: g.N, k: g.K, alpha: alpha, beta: beta,
		a: y.ptr(), lda: g.LDA, strideA: strideB,
		b: x.ptr(), ldb: g.LDB, strideB: strideA,
		c: d.ptr(), ldc: g.LDC, strideC: int64(mm * n),
		batch: nb, ab: ab, math: mode,
	}))
}

// converted returns a scratch tensor of t's shape holding t converted to
// dtype to by its ds_convert_* kernel, for the caller to Free.
func (b *Backend) converted(t *Tensor, to api.DType) *Tensor {
	s := b.Alloc(to, t.shape...).(*Tensor)
	n := int64(t.numel())
	b.launch(convertKernels[[2]api.DType{t.dtype, to}], kernels.ElementGeometry(n), s.ptr(), t.ptr(), n)
	return s
}

// blockDType panics with ErrDType for a dtype stored in blocks (Q8_0),
// which cannot be rearranged element by element, as the CPU backend does.
func blockDType(op string, t *Tensor) {
	if t.dtype.Block() != 1 {
		api.Panicf(api.ErrDType, "cuda: %s: a %s tensor %v is stored in blocks and cannot be rearranged", op, t.dtype, t.shape)
	}
}

// Permute sets dst to src with its axes reordered with ds_permute_u32 (4-byte
// dtypes) or ds_permute_u8 (the others, with an innermost axis over the
// bytes of an element); a permutation of more than 8 dimensions after
// merging runs on the host.
func (b *Backend) Permute(dst, src api.Tensor, perm ...int) {
	const op = "permute"
	d, s := b.own(dst), b.own(src)
	if d.dtype != s.dtype {
		api.Panicf(api.ErrDType, "cuda: %s: dst is %s, src is %s", op, d.dtype, s.dtype)
	}
	blockDType(op, s)
	api.CheckPermute("cuda: "+op, d.shape, s.shape, perm)
	if d.numel() == 0 {
		return
	}
	shape, axes, kernel := []int(s.shape), perm, "ds_permute_u32"
	if es := d.dtype.Size(); es != 4 {
		shape = append(slices.Clone(shape), es)
		axes = append(slices.Clone(perm), len(s.shape))
		kernel = "ds_permute_u8"
	}
	plan, err := kernels.PlanPermute(shape, axes)
	if err != nil {
		b.onHost("Permute (more than 8 dimensions)", func(c api.Backend, h *hostCall) { c.Permute(h.out(dst), h.in(src), perm...) })
		return
	}
	n := int64(api.Shape(shape).NumElements())
	b.launch(kernel, kernels.ElementGeometry(n), d.ptr(), s.ptr(), n, plan.Bytes())
}

// Slice copies the window src[..., start:start+n, ...] along axis into dst
// with ds_window_u32 or ds_window_u8.
func (b *Backend) Slice(dst, src api.Tensor, axis, start int) {
	d, s := b.own(dst), b.own(src)
	b.window("slice", s, d, axis, start, false)
}

// SetSlice copies src into the window dst[..., start:start+n, ...] along
// axis with ds_window_u32 or ds_window_u8.
func (b *Backend) SetSlice(dst, src api.Tensor, axis, start int) {
	d, s := b.own(dst), b.own(src)
	b.window("set slice", d, s, axis, start, true)
}

// window checks a window of whole along axis with part's shape (the CPU
// backend's checks) and moves it: out of whole (Slice) or, when set, into
// it (SetSlice). Each of the outer rows holds one contiguous run of the
// window; the kernel moves 4-byte words when every run and offset is a
// whole number of them, else bytes.
func (b *Backend) window(op string, whole, part *Tensor, axis, start int, set bool) {
	blockDType(op, whole)
	if whole.dtype != part.dtype {
		api.Panicf(api.ErrDType, "cuda: %s: %s tensor and %s window", op, whole.dtype, part.dtype)
	}
	api.CheckWindow("cuda: "+op, whole.shape, part.shape, axis, start)
	n, size := part.shape[axis], whole.shape[axis]
	inner := int64(api.Shape(whole.shape[axis+1:]).NumElements() * whole.dtype.Size()) // bytes
	outer := int64(api.Shape(whole.shape[:axis]).NumElements())
	length := int64(n) * inner
	if length == 0 || outer == 0 {
		return
	}
	if outer == 1 || n == size { // one contiguous run
		w, p := whole.ptr()+driver.DevicePtr(int64(start)*inner), part.ptr()
		if set {
			b.check(op, b.dev.copyDtoD(w, p, outer*length))
		} else {
			b.check(op, b.dev.copyDtoD(p, w, outer*length))
		}
		return
	}
	kernel, unit := "ds_window_u8", int64(1)
	if inner%4 == 0 {
		kernel, unit = "ds_window_u32", 4
	}
	setArg := int32(0)
	if set {
		setArg = 1
	}
	b.launch(kernel, kernels.ElementGeometry(outer*length/unit), whole.ptr(), part.ptr(), outer, int64(size), int64(start),
		inner/unit, length/unit, setArg)
}

// rowsOf checks dst and x [..., D] of the same shape and returns the rows
// and D.
func rowsOf(op string, d, x *Tensor) (rows, D int) {
	sameShape(op, d, x)
	if len(x.shape) == 0 {
		api.Panicf(api.ErrShape, "cuda: %s of a scalar", op)
	}
	D = x.shape[len(x.shape)-1]
	if D == 0 {
		return 0, 0
	}
	return x.numel() / D, D
}

// RMSNorm runs ds_rmsnorm_f32, one block a row.
func (b *Backend) RMSNorm(dst, x, w api.Tensor, eps float32) {
	const op = "rmsnorm"
	d, s, wt := b.f32(dst, op), b.f32(x, op), b.f32OrNil(w, op)
	rows, D := rowsOf(op, d, s)
	if wt != nil {
		wantShape(op, "w", wt, s.shape[len(s.shape)-1])
	}
	if rows == 0 {
		return
	}
	g, err := kernels.RowGeometry(rows)
	b.check(op, err)
	b.launch("ds_rmsnorm_f32", g, d.ptr(), s.ptr(), ptrOf(wt), int32(D), eps)
}

// RMSNormGrad computes each row's 1/rms in double (ds_rms_inv_f32, into a
// scratch buffer), then dx (ds_rmsnorm_grad_f32, one block a row) and dw
// (ds_rmsnorm_grad_w_f32, one thread a column, summed over rows in double).
func (b *Backend) RMSNormGrad(dx, dw, x, w, dy api.Tensor, eps float32) {
	const op = "rmsnorm grad"
	s, up := b.f32(x, op), b.f32(dy, op)
	g, gw, wt := b.f32OrNil(dx, op), b.f32OrNil(dw, op), b.f32OrNil(w, op)
	rows, D := rowsOf(op, up, s)
	if g != nil {
		sameShape(op, g, s)
	}
	last := s.shape[len(s.shape)-1]
	if wt != nil {
		wantShape(op, "w", wt, last)
	}
	if gw != nil {
		if wt == nil {
			api.Panicf(api.ErrShape, "cuda: %s: dw %v given without a weight", op, gw.shape)
		}
		wantShape(op, "dw", gw, last)
	}
	if gw != nil && rows == 0 {
		b.Fill(gw, 0) // no rows: a zero sum
	}
	if rows == 0 || (g == nil && gw == nil) {
		return
	}
	geo, err := kernels.RowGeometry(rows)
	b.check(op, err)
	inv := b.Alloc(api.U8, 8*rows).(*Tensor) // float64 per row
	defer b.Free(inv)
	b.launch("ds_rms_inv_f32", geo, inv.ptr(), s.ptr(), int32(D), eps)
	if g != nil {
		b.launch("ds_rmsnorm_grad_f32", geo, g.ptr(), s.ptr(), ptrOf(wt), up.ptr(), inv.ptr(), int32(D))
	}
	if gw != nil {
		b.launch("ds_rmsnorm_grad_w_f32", kernels.ElementGeometry(int64(D)), gw.ptr(), s.ptr(), up.ptr(), inv.ptr(), int64(rows), int32(D))
	}
}

// rowKernel runs a one-block-a-row kernel over the last axis: its
// arguments are dst, the inputs (each of dst's shape) and the row length.
func (b *Backend) rowKernel(kernel, op string, dst api.Tensor, in ...api.Tensor) {
	d := b.f32(dst, op)
	args := []any{d.ptr()}
	var rows, V int
	for _, t := range in {
		s := b.f32(t, op)
		rows, V = rowsOf(op, d, s)
		args = append(args, s.ptr())
	}
	if rows == 0 {
		return
	}
	g, err := kernels.RowGeometry(rows)
	b.check(op, err)
	b.launch(kernel, g, append(args, int32(V))...)
}

// Softmax runs ds_softmax_f32.
func (b *Backend) Softmax(dst, x api.Tensor) { b.rowKernel("ds_softmax_f32", "softmax", dst, x) }

// LogSoftmax runs ds_log_softmax_f32.
func (b *Backend) LogSoftmax(dst, x api.Tensor) {
	b.rowKernel("ds_log_softmax_f32", "log-softmax", dst, x)
}

// SoftmaxGrad runs ds_softmax_grad_f32: dx = y * (dy - sum(y dy)), the sum
// in double, one block a row.
func (b *Backend) SoftmaxGrad(dx, y, dy api.Tensor) {
	b.rowKernel("ds_softmax_grad_f32", "softmax grad", dx, y, dy)
}

// LogSoftmaxGrad runs ds_log_softmax_grad_f32: dx = dy - exp(y) sum(dy),
// the sum in double, one block a row.
func (b *Backend) LogSoftmaxGrad(dx, y, dy api.Tensor) {
	b.rowKernel("ds_log_softmax_grad_f32", "log-softmax grad", dx, y, dy)
}

// CrossEntropy runs ds_cross_entropy_f32 and reads back its flag of a
// target out of range, which it turns into an ErrOutOfRange panic.
func (b *Backend) CrossEntropy(loss, dlogits, logits, targets api.Tensor, ignoreIndex int32) {
	const op = "cross-entropy"
	l, x := b.f32(loss, op), b.f32(logits, op)
	dl := b.f32OrNil(dlogits, op)
	tg := b.own(targets)
	if tg.dtype != api.I32 {
		api.Panicf(api.ErrDType, "cuda: %s: targets are %s, want I32", op, tg.dtype)
	}
	if len(x.shape) != 2 {
		api.Panicf(api.ErrShape, "cuda: %s: logits %v, want [N,V]", op, x.shape)
	}
	N, V := x.shape[0], x.shape[1]
	wantShape(op, "targets", tg, N)
	wantShape(op, "loss", l, N)
	if dl != nil {
		wantShape(op, "dlogits", dl, N, V)
	}
	if N == 0 {
		return
	}
	flag := b.newFlag()
	defer b.Free(flag)
	g, err := kernels.RowGeometry(N)
	b.check(op, err)
	b.launch("ds_cross_entropy_f32", g, l.ptr(), ptrOf(dl), x.ptr(), tg.ptr(), int32(V), ignoreIndex, flag.ptr())
	if row, bad := b.flagged(flag); bad {
		api.Panicf(api.ErrOutOfRange, "cuda: %s: the target of row %d is outside [0,%d)", op, row, V)
	}
}

// gatherKernels are Gather's kernels (layout.cu) by the table's dtype.
var gatherKernels = map[api.DType]string{api.F32: "ds_gather_f32", api.BF16: "ds_gather_bf16", api.Q8_0: "ds_gather_q8_0"}

// Gather copies table rows by I32 ids with ds_gather_f32 or, from a BF16 or
// Q8_0 table, ds_gather_bf16 or ds_gather_q8_0 (widened exactly as Convert
// does). An id out of range is reported by the kernel's flag, read back and
// raised as api.ErrOutOfRange.
func (b *Backend) Gather(dst, table, ids api.Tensor) {
	const op = "gather"
	tb, d := b.own(table), b.f32(dst, op)
	kernel, ok := gatherKernels[tb.dtype]
	if !ok {
		api.Panicf(api.ErrDType, "cuda: %s: a %s table, want F32, BF16 or Q8_0", op, tb.dtype)
	}
	x, V, D := b.gatherShapes(op, "dst", tb, ids, d)
	rows := int64(x.numel())
	if rows == 0 {
		return
	}
	if D == 0 { // nothing to copy, but the ids are still checked
		b.checkIDs(op, x, V)
		return
	}
	flag := b.newFlag()
	defer b.Free(flag)
	b.launch(kernel, kernels.ElementGeometry(rows*int64(D)), d.ptr(), tb.ptr(), x.ptr(), rows, int32(D), int32(V), flag.ptr())
	b.idFlag(op, flag, x, V)
}

// gatherShapes checks the shapes of Gather and GatherGrad: a table [V,D]
// (V and D within int32: the kernels' types), I32 ids, and rows (what
// names it) of shape ids' + [D]. It returns the ids, V and D.
func (b *Backend) gatherShapes(op, what string, tb *Tensor, ids api.Tensor, rows *Tensor) (x *Tensor, V, D int) {
	x = b.own(ids)
	if x.dtype != api.I32 {
		api.Panicf(api.ErrDType, "cuda: %s: ids are %s, want I32", op, x.dtype)
	}
	if len(tb.shape) != 2 {
		api.Panicf(api.ErrShape, "cuda: %s: table %v, want [V,D]", op, tb.shape)
	}
	V, D = tb.shape[0], tb.shape[1]
	if r := len(x.shape); len(rows.shape) != r+1 || !slices.Equal(rows.shape[:r], x.shape) || rows.shape[r] != D {
		want := append(slices.Clone(x.shape), D)
		api.Panicf(api.ErrShape, "cuda: %s: %s has shape %v, want %v for ids %v and table %v", op, what, rows.shape, want, x.shape, tb.shape)
	}
	if V > 1<<31-1 || D > 1<<31-1 {
		api.Panicf(api.ErrUnsupported, "cuda: %s: table %v", op, tb.shape)
	}
	return x, V, D
}

// checkIDs downloads the I32 ids and panics with api.ErrOutOfRange at the
// first outside [0,V) (for tables with no columns, where no kernel runs).
func (b *Backend) checkIDs(op string, x *Tensor, V int) {
	raw := make([]byte, 4*x.numel())
	b.download(raw, x.ptr())
	for i := range x.numel() {
		if id := int32(binary.LittleEndian.Uint32(raw[4*i:])); id < 0 || int(id) >= V {
			api.Panicf(api.ErrOutOfRange, "cuda: %s: id %d at %d is outside [0,%d)", op, id, i, V)
		}
	}
}

// idFlag reads back the bad-row flag of a kernel indexing a table of V rows
// by the ids x and panics with api.ErrOutOfRange, naming the id, when it
// was set.
func (b *Backend) idFlag(op string, flag, x *Tensor, V int) {
	if row, bad := b.flagged(flag); bad {
		var id [4]byte
		b.download(id[:], x.ptr()+driver.DevicePtr(4*row))
		api.Panicf(api.ErrOutOfRange, "cuda: %s: id %d at %d is outside [0,%d)", op, int32(binary.LittleEndian.Uint32(id[:])), row, V)
	}
}

// GatherGrad zeroes dtable and adds each row of dy into the row its id
// names with ds_gather_grad_f32 (atomicAdd: the order of the additions into
// one row is not fixed). An id out of range is reported by the kernel's flag
// and raised as api.ErrOutOfRange (the CPU backend checks the ids first and
// leaves dtable as it was; here dtable then holds a partial sum).
func (b *Backend) GatherGrad(dtable, ids, dy api.Tensor) {
	const op = "gather grad"
	tb, up := b.f32(dtable, op), b.f32(dy, op)
	x, V, D := b.gatherShapes(op, "dy", tb, ids, up)
	rows := int64(x.numel())
	if rows > 0 && D == 0 { // nothing to add, but the ids are still checked
		b.checkIDs(op, x, V)
	}
	if tb.numel() > 0 {
		b.Fill(dtable, 0)
	}
	if rows == 0 || D == 0 {
		return
	}
	flag := b.newFlag()
	defer b.Free(flag)
	b.launch("ds_gather_grad_f32", kernels.ElementGeometry(rows*int64(D)), tb.ptr(), x.ptr(), up.ptr(), rows, int32(D), int32(V), flag.ptr())
	b.idFlag(op, flag, x, V)
}
