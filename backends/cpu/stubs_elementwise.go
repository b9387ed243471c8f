package cpu

import "github.com/densessm/densessm/api"

// Owned by the core-kernels helper: replace these with real kernels in files
// of your own (elementwise.go, matmul.go, ...), then delete this file.

func (b *Backend) Unary(op api.UnaryOp, dst, x api.Tensor)                       { panic("todo") }
func (b *Backend) UnaryGrad(op api.UnaryOp, dx, x, dy api.Tensor)                { panic("todo") }
func (b *Backend) Affine(dst, x api.Tensor, scale, shift float32)                { panic("todo") }
func (b *Backend) Binary(op api.BinaryOp, dst, a, c api.Tensor)                  { panic("todo") }
func (b *Backend) SumTo(dst, x api.Tensor)                                       { panic("todo") }
func (b *Backend) MatMul(dst, a, c api.Tensor, ta, tb bool, alpha, beta float32) { panic("todo") }
func (b *Backend) Permute(dst, src api.Tensor, perm ...int)                      { panic("todo") }
func (b *Backend) Slice(dst, src api.Tensor, axis, start int)                    { panic("todo") }
func (b *Backend) SetSlice(dst, src api.Tensor, axis, start int)                 { panic("todo") }
func (b *Backend) RMSNorm(dst, x, w api.Tensor, eps float32)                     { panic("todo") }
func (b *Backend) RMSNormGrad(dx, dw, x, w, dy api.Tensor, eps float32)          { panic("todo") }
func (b *Backend) Softmax(dst, x api.Tensor)                                     { panic("todo") }
func (b *Backend) SoftmaxGrad(dx, y, dy api.Tensor)                              { panic("todo") }
func (b *Backend) LogSoftmax(dst, x api.Tensor)                                  { panic("todo") }
func (b *Backend) LogSoftmaxGrad(dx, y, dy api.Tensor)                           { panic("todo") }
func (b *Backend) CrossEntropy(loss, dlogits, logits, targets api.Tensor, ignoreIndex int32) {
	panic("todo")
}
func (b *Backend) Gather(dst, table, ids api.Tensor)     { panic("todo") }
func (b *Backend) GatherGrad(dtable, ids, dy api.Tensor) { panic("todo") }
