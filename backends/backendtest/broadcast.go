package backendtest

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	register("Binary", testBinary)
	register("SumTo", testSumTo)
	register("BinaryGrad", testBinaryGrad)
}

// binaryCase is a pair of operand shapes and their broadcast shape, written
// out by hand.
type binaryCase struct{ a, b, out []int }

var binaryCases = []binaryCase{
	{[]int{3, 5}, []int{5}, []int{3, 5}},
	{[]int{5}, []int{3, 5}, []int{3, 5}},
	{[]int{4, 1, 6}, []int{1, 7, 1}, []int{4, 7, 6}},
	{[]int{}, []int{2, 3}, []int{2, 3}},
	{[]int{2, 3}, []int{}, []int{2, 3}},
	{[]int{}, []int{}, []int{}},
	{[]int{1}, []int{4}, []int{4}},
	{[]int{3, 1}, []int{1, 4}, []int{3, 4}},
	{[]int{1, 1}, []int{3}, []int{1, 3}},
	{[]int{2, 1, 3, 1}, []int{5, 1, 4}, []int{2, 5, 3, 4}},
	{[]int{2, 3, 4}, []int{2, 3, 4}, []int{2, 3, 4}},
	{[]int{2, 0, 3}, []int{3}, []int{2, 0, 3}},
	{[]int{0}, []int{1}, []int{0}},
	{[]int{64, 33}, []int{33}, []int{64, 33}},
	{[]int{37, 1}, []int{37, 41}, []int{37, 41}},
}

// binaryRef is the float64 reference of a BinaryOp.
func binaryRef(op api.BinaryOp) func(x, y float64) float64 {
	switch op {
	case api.OpAdd:
		return func(x, y float64) float64 { return x + y }
	case api.OpSub:
		return func(x, y float64) float64 { return x - y }
	case api.OpMul:
		return func(x, y float64) float64 { return x * y }
	case api.OpDiv:
		return func(x, y float64) float64 { return x / y }
	}
	return nil
}

// refBinary applies f with broadcasting.
func refBinary(f func(x, y float64) float64, a []float64, as []int, c []float64, cs, out []int) []float64 {
	y := make([]float64, numel(out))
	for i := range y {
		y[i] = f(a[broadcastIndex(out, as, i)], c[broadcastIndex(out, cs, i)])
	}
	return y
}

// binaryOperands draws operands for op; divisors stay away from zero.
func binaryOperands(r *rand.Rand, op api.BinaryOp, c binaryCase) (a, bv []float64) {
	a = f32(randVals(r, numel(c.a), -2, 2))
	bv = f32(randVals(r, numel(c.b), -2, 2))
	if op == api.OpDiv {
		for i, v := range bv {
			bv[i] = float64(float32(math.Copysign(0.5+math.Abs(v)*0.75, v)))
		}
	}
	return a, bv
}

func testBinary(t *testing.T, b api.Backend) {
	r := newRand(21)
	for _, op := range api.BinaryOps() {
		f := binaryRef(op)
		if f == nil {
			t.Errorf("the suite has no reference for binary op %v", op)
			continue
		}
		for _, c := range binaryCases {
			runSub(t, op.String()+"/"+shapeName(c.a)+"_"+shapeName(c.b), func(t *testing.T) {
				a, bv := binaryOperands(r, op, c)
				want := refBinary(f, a, c.a, bv, c.b, c.out)
				at, bt := upload(b, a, c.a...), upload(b, bv, c.b...)
				dst := upload(b, filled(numel(c.out), math.NaN()), c.out...)
				b.Binary(op, dst, at, bt)
				checkRel(t, "binary", download(dst), want, RelTol)
				checkExact(t, "first operand unchanged", download(at), a)
				checkExact(t, "second operand unchanged", download(bt), bv)
				if slices.Equal(c.a, c.out) {
					b.Binary(op, at, at, bt)
					checkRel(t, "binary into the first operand", download(at), want, RelTol)
				}
				if slices.Equal(c.b, c.out) {
					bt = upload(b, bv, c.b...)
					b.Binary(op, bt, upload(b, a, c.a...), bt)
					checkRel(t, "binary into the second operand", download(bt), want, RelTol)
				}
			})
		}
	}
}

// refSumTo sums x over the axes that broadcasting dst's shape to x's
// shape expands.
func refSumTo(x []float64, xs, ds []int) []float64 {
	out := make([]float64, numel(ds))
	for i, v := range x {
		out[broadcastIndex(xs, ds, i)] += v
	}
	return out
}

func testSumTo(t *testing.T, b api.Backend) {
	r := newRand(22)
	cases := []struct{ x, dst []int }{
		{[]int{3, 5}, []int{5}},
		{[]int{3, 5}, []int{1, 5}},
		{[]int{3, 5}, []int{3, 1}},
		{[]int{3, 5}, []int{}},
		{[]int{3, 5}, []int{1}},
		{[]int{3, 5}, []int{3, 5}},
		{[]int{4, 7, 6}, []int{1, 7, 1}},
		{[]int{4, 7, 6}, []int{7, 1}},
		{[]int{4, 7, 6}, []int{4, 1, 6}},
		{[]int{4, 7, 6}, []int{6}},
		{[]int{4, 7, 6}, []int{1, 1, 1}},
		{[]int{5, 1, 3}, []int{1, 3}},
		{[]int{}, []int{}},
		{[]int{2, 0, 3}, []int{3}},
		{[]int{2, 0, 3}, []int{2, 1, 3}},
		{[]int{0}, []int{1}},
		{[]int{0, 4}, []int{0, 1}},
		{[]int{40, 50}, []int{}},
		{[]int{40, 50}, []int{50}},
		{[]int{40, 50}, []int{40, 1}},
		{[]int{3, 40, 50}, []int{3, 1, 50}},
	}
	for _, c := range cases {
		runSub(t, shapeName(c.x)+"_to_"+shapeName(c.dst), func(t *testing.T) {
			x := f32(randVals(r, numel(c.x), -1, 1))
			dst := upload(b, filled(numel(c.dst), math.NaN()), c.dst...)
			b.SumTo(dst, upload(b, x, c.x...))
			checkRel(t, "sumto", download(dst), refSumTo(x, c.x, c.dst), RelTol)
		})
	}
}

// testBinaryGrad composes the gradients of broadcasting binary ops the way
// nn does (dy times the local derivative, then SumTo each operand's shape)
// and checks them against finite differences of the reference.
func testBinaryGrad(t *testing.T, b api.Backend) {
	r := newRand(23)
	cases := []binaryCase{
		{[]int{3, 5}, []int{5}, []int{3, 5}},
		{[]int{4, 1, 6}, []int{1, 7, 1}, []int{4, 7, 6}},
		{[]int{}, []int{2, 3}, []int{2, 3}},
		{[]int{2, 3}, []int{2, 1}, []int{2, 3}},
		{[]int{2, 3}, []int{2, 3}, []int{2, 3}},
	}
	for _, op := range api.BinaryOps() {
		f := binaryRef(op)
		if f == nil {
			t.Errorf("the suite has no reference for binary op %v", op)
			continue
		}
		for _, c := range cases {
			runSub(t, op.String()+"/"+shapeName(c.a)+"_"+shapeName(c.b), func(t *testing.T) {
				a, bv := binaryOperands(r, op, c)
				dy := f32(randVals(r, numel(c.out), -1, 1))
				want := numericGrad(func(in [][]float64) []float64 {
					return refBinary(f, in[0], c.a, in[1], c.b, c.out)
				}, [][]float64{a, bv}, dy)

				at, bt, dyt := upload(b, a, c.a...), upload(b, bv, c.b...), upload(b, dy, c.out...)
				da, db := b.Alloc(api.F32, c.a...), b.Alloc(api.F32, c.b...)
				tmp := b.Alloc(api.F32, c.out...)
				switch op {
				case api.OpAdd:
					b.SumTo(da, dyt)
					b.SumTo(db, dyt)
				case api.OpSub:
					b.SumTo(da, dyt)
					b.Unary(api.OpNeg, tmp, dyt)
					b.SumTo(db, tmp)
				case api.OpMul:
					b.Binary(api.OpMul, tmp, dyt, bt)
					b.SumTo(da, tmp)
					b.Binary(api.OpMul, tmp, dyt, at)
					b.SumTo(db, tmp)
				case api.OpDiv: // d(a/b)/db = -(1/b) * (a/b)
					y := b.Alloc(api.F32, c.out...)
					b.Binary(api.OpDiv, y, at, bt)
					b.Binary(api.OpDiv, tmp, dyt, bt)
					b.SumTo(da, tmp)
					b.Binary(api.OpMul, tmp, tmp, y)
					b.Unary(api.OpNeg, tmp, tmp)
					b.SumTo(db, tmp)
				}
				checkRel(t, "gradient of a", download(da), want[0], GradTol)
				checkRel(t, "gradient of b", download(db), want[1], GradTol)
			})
		}
	}
}
