package backendtest

import (
	"testing"

	"github.com/densessm/densessm/api"
)

func init() { register("Misuse", testMisuse) }

// foreignTensor is a tensor of no backend, to check that kernels refuse
// tensors they do not own.
type foreignTensor struct{ shape api.Shape }

func (f foreignTensor) DType() api.DType     { return api.F32 }
func (f foreignTensor) Shape() api.Shape     { return f.shape }
func (f foreignTensor) Backend() api.Backend { return nil }

// testMisuse checks that the core kernels panic with an error wrapping the
// documented sentinel on bad shapes, dtypes and ids (the Kernels
// conventions: ErrShape, ErrDType, ErrOutOfRange).
func testMisuse(t *testing.T, b api.Backend) {
	f := func(shape ...int) api.Tensor { return b.Alloc(api.F32, shape...) }
	typed := func(d api.DType, shape ...int) api.Tensor { return b.Alloc(d, shape...) }
	ids := func(v ...int32) api.Tensor { return uploadIDs(b, v, len(v)) }
	shape, dtype, oor := api.ErrShape, api.ErrDType, api.ErrOutOfRange
	cases := []struct {
		name string
		fn   func()
		// sentinels: the error must wrap one of them. Two where the api
		// leaves the class open: a dtype pair that Convert does not list
		// is a wrong dtype or unsupported; a slice window or axis outside
		// the tensor is "any other misuse of an argument" (ErrShape) or an
		// offset out of range (ErrOutOfRange). None for a foreign tensor,
		// where any error value will do.
		sentinels []error
	}{
		{"Fill/I32", func() { b.Fill(typed(api.I32, 3), 1) }, []error{dtype}},
		{"Copy/count", func() { b.Copy(f(3), f(4)) }, []error{shape}},
		{"Copy/dtype", func() { b.Copy(f(3), typed(api.I32, 3)) }, []error{dtype}},
		{"Convert/count", func() { b.Convert(f(3), typed(api.F16, 4)) }, []error{shape}},
		{"Convert/F32toI32", func() { b.Convert(typed(api.I32, 3), f(3)) }, []error{dtype, api.ErrUnsupported}},
		{"Convert/F16toBF16", func() { b.Convert(typed(api.BF16, 3), typed(api.F16, 3)) }, []error{dtype, api.ErrUnsupported}},
		{"Unary/shape", func() { b.Unary(api.OpExp, f(3), f(4)) }, []error{shape}},
		{"Unary/transposed_shape", func() { b.Unary(api.OpExp, f(2, 3), f(3, 2)) }, []error{shape}},
		{"Unary/I32", func() { b.Unary(api.OpExp, typed(api.I32, 3), typed(api.I32, 3)) }, []error{dtype}},
		{"UnaryGrad/shape", func() { b.UnaryGrad(api.OpExp, f(3), f(3), f(4)) }, []error{shape}},
		{"Affine/shape", func() { b.Affine(f(3), f(4), 1, 0) }, []error{shape}},
		{"Binary/incompatible", func() { b.Binary(api.OpAdd, f(3, 5), f(3, 5), f(4)) }, []error{shape}},
		{"Binary/dst", func() { b.Binary(api.OpAdd, f(5, 3), f(3, 5), f(5)) }, []error{shape}},
		{"Binary/I32", func() { b.Binary(api.OpAdd, typed(api.I32, 3), typed(api.I32, 3), typed(api.I32, 3)) }, []error{dtype}},
		{"SumTo/not_broadcastable", func() { b.SumTo(f(4), f(3, 5)) }, []error{shape}},
		{"SumTo/wrong_size", func() { b.SumTo(f(2, 5), f(3, 5)) }, []error{shape}},
		{"SumTo/higher_rank", func() { b.SumTo(f(2, 3, 5), f(3, 5)) }, []error{shape}},
		{"MatMul/inner", func() { b.MatMul(f(2, 4), f(2, 3), f(5, 4), false, false, 1, 0) }, []error{shape}},
		{"MatMul/inner_transposed", func() { b.MatMul(f(2, 4), f(2, 3), f(4, 3), false, false, 1, 0) }, []error{shape}},
		{"MatMul/dst", func() { b.MatMul(f(4, 2), f(2, 3), f(3, 4), false, false, 1, 0) }, []error{shape}},
		{"MatMul/batch", func() { b.MatMul(f(2, 2, 4), f(2, 2, 3), f(3, 3, 4), false, false, 1, 0) }, []error{shape}},
		{"MatMul/rank1", func() { b.MatMul(f(4), f(3), f(3, 4), false, false, 1, 0) }, []error{shape}},
		{"MatMul/F16", func() { b.MatMul(f(2, 4), typed(api.F16, 2, 3), f(3, 4), false, false, 1, 0) }, []error{dtype}},
		{"Permute/repeated_axis", func() { b.Permute(f(3, 3), f(3, 3), 0, 0) }, []error{shape}},
		{"Permute/perm_length", func() { b.Permute(f(4, 3), f(3, 4), 1) }, []error{shape}},
		{"Permute/dst_shape", func() { b.Permute(f(3, 4), f(3, 4), 1, 0) }, []error{shape}},
		{"Permute/dtype", func() { b.Permute(typed(api.I32, 4, 3), f(3, 4), 1, 0) }, []error{dtype}},
		{"Slice/window", func() { b.Slice(f(2, 3), f(4, 3), 0, 3) }, []error{shape, oor}},
		{"Slice/negative_start", func() { b.Slice(f(2, 3), f(4, 3), 0, -1) }, []error{shape, oor}},
		{"Slice/axis", func() { b.Slice(f(4, 3), f(4, 3), 2, 0) }, []error{shape, oor}},
		{"Slice/other_axis", func() { b.Slice(f(2, 2), f(4, 3), 0, 0) }, []error{shape}},
		{"Slice/dtype", func() { b.Slice(typed(api.I32, 2, 3), f(4, 3), 0, 0) }, []error{dtype}},
		{"SetSlice/window", func() { b.SetSlice(f(4, 3), f(2, 3), 0, 3) }, []error{shape, oor}},
		{"SetSlice/other_axis", func() { b.SetSlice(f(4, 3), f(2, 2), 0, 0) }, []error{shape}},
		{"RMSNorm/weight", func() { b.RMSNorm(f(2, 5), f(2, 5), f(4), 1e-5) }, []error{shape}},
		{"RMSNorm/dst", func() { b.RMSNorm(f(2, 4), f(2, 5), nil, 1e-5) }, []error{shape}},
		{"RMSNormGrad/dw", func() { b.RMSNormGrad(f(2, 5), f(4), f(2, 5), f(5), f(2, 5), 1e-5) }, []error{shape}},
		{"RMSNormGrad/dw_without_w", func() { b.RMSNormGrad(f(2, 5), f(5), f(2, 5), nil, f(2, 5), 1e-5) }, []error{shape}},
		{"RMSNormGrad/dy", func() { b.RMSNormGrad(f(2, 5), nil, f(2, 5), nil, f(5, 2), 1e-5) }, []error{shape}},
		{"Softmax/dst", func() { b.Softmax(f(2, 4), f(2, 5)) }, []error{shape}},
		{"SoftmaxGrad/dy", func() { b.SoftmaxGrad(f(2, 5), f(2, 5), f(2, 4)) }, []error{shape}},
		{"LogSoftmax/dst", func() { b.LogSoftmax(f(5, 2), f(2, 5)) }, []error{shape}},
		{"LogSoftmaxGrad/dy", func() { b.LogSoftmaxGrad(f(2, 5), f(2, 5), f(10)) }, []error{shape}},
		{"CrossEntropy/target_V", func() { b.CrossEntropy(f(2), nil, f(2, 5), ids(0, 5), api.IgnoreIndex) }, []error{oor}},
		{"CrossEntropy/target_negative", func() { b.CrossEntropy(f(2), f(2, 5), f(2, 5), ids(-1, 0), api.IgnoreIndex) }, []error{oor}},
		{"CrossEntropy/targets_F32", func() { b.CrossEntropy(f(2), nil, f(2, 5), f(2), api.IgnoreIndex) }, []error{dtype}},
		{"CrossEntropy/targets_count", func() { b.CrossEntropy(f(2), nil, f(2, 5), ids(0, 1, 2), api.IgnoreIndex) }, []error{shape}},
		{"CrossEntropy/loss", func() { b.CrossEntropy(f(3), nil, f(2, 5), ids(0, 1), api.IgnoreIndex) }, []error{shape}},
		{"CrossEntropy/dlogits", func() { b.CrossEntropy(f(2), f(2, 4), f(2, 5), ids(0, 1), api.IgnoreIndex) }, []error{shape}},
		{"Gather/id_V", func() { b.Gather(f(2, 3), f(4, 3), ids(0, 4)) }, []error{oor}},
		{"Gather/id_negative", func() { b.Gather(f(2, 3), f(4, 3), ids(-1, 0)) }, []error{oor}},
		{"Gather/ids_F32", func() { b.Gather(f(2, 3), f(4, 3), f(2)) }, []error{dtype}},
		{"Gather/dst", func() { b.Gather(f(2, 2), f(4, 3), ids(0, 1)) }, []error{shape}},
		{"GatherGrad/id", func() { b.GatherGrad(f(4, 3), ids(0, 4), f(2, 3)) }, []error{oor}},
		{"GatherGrad/dy", func() { b.GatherGrad(f(4, 3), ids(0, 1), f(2, 2)) }, []error{shape}},
		{"foreign/Fill", func() { b.Fill(foreignTensor{api.Shape{3}}, 1) }, nil},
		{"foreign/Unary", func() { b.Unary(api.OpExp, f(3), foreignTensor{api.Shape{3}}) }, nil},
	}
	for _, c := range cases {
		runSub(t, c.name, func(t *testing.T) {
			mustPanicWith(t, c.name, c.fn, c.sentinels...)
		})
	}
}
