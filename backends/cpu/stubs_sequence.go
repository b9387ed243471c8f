package cpu

import "github.com/densessm/densessm/api"

// Owned by the sequence-kernels helper: replace these with real kernels in
// files of your own (conv.go, scan.go, rotary.go, retention.go), then delete
// this file.

func (b *Backend) CausalConv1d(dst, x, w, bias, prev api.Tensor)                    { panic("todo") }
func (b *Backend) CausalConv1dGrad(dx, dw, dbias, dprev, x, w, prev, dy api.Tensor) { panic("todo") }
func (b *Backend) SelectiveScan(y, hT api.Tensor, in api.ScanArgs)                  { panic("todo") }
func (b *Backend) SelectiveScanGrad(g api.ScanGrads, in api.ScanArgs, dy, dhT api.Tensor) {
	panic("todo")
}
func (b *Backend) Rotary(dst, x api.Tensor, theta []float32, offset int, inverse bool) { panic("todo") }
func (b *Backend) Retention(form api.RetentionForm, o, sT api.Tensor, in api.RetentionArgs) {
	panic("todo")
}
func (b *Backend) RetentionGrad(form api.RetentionForm, g api.RetentionGrads, in api.RetentionArgs, do, dsT api.Tensor) {
	panic("todo")
}
