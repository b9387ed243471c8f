package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"unsafe"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// fakeDevice is a device in host memory: allocations are Go memory at
// made-up addresses, copies are copies, and each kernel the backend
// launches is modelled in Go after its CUDA C (the same arguments, read
// the same way, the same formulas; sequential where the GPU splits the
// work, so sums are in another order). It checks what a GPU would not
// report clearly: every launch's arguments against the kernel's CUDA C
// signature, every address against the allocations, cuBLAS's leading
// dimensions. It lets CI test the backend's dispatch, layouts, allocator
// and copies; it says nothing about the CUDA C itself.
type fakeDevice struct {
	mu       sync.Mutex
	total    int64
	used     int64
	next     driver.DevicePtr
	bases    []driver.DevicePtr // sorted
	mem      map[driver.DevicePtr][]byte
	launches map[string]int  // kernels launched, by name ("cublasSgemm" and "cublasGemmEx" for GEMMs, "cublasSetMathMode", "cuMemcpyHtoDAsync" for uploads)
	math     driver.MathMode // the cuBLAS handle's math mode
}

func newFakeDevice(total int64) *fakeDevice {
	return &fakeDevice{total: total, next: 1 << 32, mem: map[driver.DevicePtr][]byte{}, launches: map[string]int{}}
}

func (f *fakeDevice) describe() string {
	return fmt.Sprintf("fake CUDA device (host memory, %d MiB)", f.total>>20)
}

func (f *fakeDevice) memInfo() (int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total - f.used, f.total, nil
}

func (f *fakeDevice) alloc(n int64) (driver.DevicePtr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n <= 0 || f.used+n > f.total {
		return 0, &driver.Error{Call: "cuMemAlloc_v2", Code: driver.ErrorOutOfMemory, Name: "CUDA_ERROR_OUT_OF_MEMORY", Msg: "out of memory (fake device)"}
	}
	words := make([]uint64, (n+7)/8) // 8-byte aligned
	p := f.next
	f.next += driver.DevicePtr((n + 255) / 256 * 256)
	f.mem[p] = unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
	i, _ := slices.BinarySearch(f.bases, p)
	f.bases = slices.Insert(f.bases, i, p)
	f.used += n
	return p, nil
}

func (f *fakeDevice) free(p driver.DevicePtr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.mem[p]
	if !ok {
		return fmt.Errorf("fake device: free of %#x, which is not an allocation", uint64(p))
	}
	f.used -= int64(len(m))
	delete(f.mem, p)
	i, _ := slices.BinarySearch(f.bases, p)
	f.bases = slices.Delete(f.bases, i, i+1)
	return nil
}

// bytesAt returns the allocated memory from p to its allocation's end.
func (f *fakeDevice) bytesAt(p driver.DevicePtr) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := sort.Search(len(f.bases), func(i int) bool { return f.bases[i] > p }) - 1
	if i < 0 {
		panic(fmt.Errorf("fake device: address %#x is not allocated", uint64(p)))
	}
	m := f.mem[f.bases[i]]
	off := int(p - f.bases[i])
	if off >= len(m) {
		panic(fmt.Errorf("fake device: address %#x is not allocated", uint64(p)))
	}
	return m[off:]
}

// span returns n bytes at p, panicking when they are not all allocated.
func (f *fakeDevice) span(p driver.DevicePtr, n int64) []byte {
	if n == 0 {
		return nil
	}
	m := f.bytesAt(p)
	if int64(len(m)) < n {
		panic(fmt.Errorf("fake device: %d bytes at %#x run past the allocation", n, uint64(p)))
	}
	return m[:n]
}

// f32s returns n floats at p (nil for a null pointer).
func (f *fakeDevice) f32s(p driver.DevicePtr, n int64) []float32 {
	if p == 0 || n == 0 {
		return nil
	}
	b := f.span(p, 4*n)
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}

func (f *fakeDevice) i32s(p driver.DevicePtr, n int64) []int32 {
	if p == 0 || n == 0 {
		return nil
	}
	b := f.span(p, 4*n)
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), n)
}

func (f *fakeDevice) hostAlloc(n int) (staging, error) { return staging{bytes: make([]byte, n)}, nil }
func (f *fakeDevice) hostFree(staging) error           { return nil }

func (f *fakeDevice) copyHtoD(dst driver.DevicePtr, src staging, off, n int) (err error) {
	defer api.Recover(&err)
	f.count("cuMemcpyHtoDAsync")
	copy(f.span(dst, int64(n)), src.bytes[off:off+n])
	return nil
}

func (f *fakeDevice) copyDtoH(dst staging, off, n int, src driver.DevicePtr) (err error) {
	defer api.Recover(&err)
	copy(dst.bytes[off:off+n], f.span(src, int64(n)))
	return nil
}

func (f *fakeDevice) copyDtoD(dst, src driver.DevicePtr, n int64) (err error) {
	defer api.Recover(&err)
	copy(f.span(dst, n), f.span(src, n))
	return nil
}

func (f *fakeDevice) fill32(dst driver.DevicePtr, v uint32, n int64) (err error) {
	defer api.Recover(&err)
	b := f.span(dst, 4*n)
	for i := int64(0); i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return nil
}

func (f *fakeDevice) sync() error  { return nil }
func (f *fakeDevice) close() error { return nil }

func (f *fakeDevice) count(name string) {
	f.mu.Lock()
	f.launches[name]++
	f.mu.Unlock()
}

// launched returns the launch counts by kernel name.
func (f *fakeDevice) launched() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps(f.launches)
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// gemm is cuBLAS's GEMM on the host: the operands as the call's types and
// math mode make them (BF16 decoded exactly; F32 rounded to TF32 under
// driver.TF32Math, as roundTF32), their products and sums in float64, the
// result rounded to float32, with cuBLAS's checks of the leading
// dimensions. A change of math mode counts as a cublasSetMathMode, as the
// real device calls it.
func (f *fakeDevice) gemm(g gemmCall) (err error) {
	defer api.Recover(&err)
	call := map[driver.DataType]string{driver.R32F: "cublasSgemm", driver.R16BF: "cublasGemmEx"}[g.ab]
	if call == "" {
		return fmt.Errorf("fake cuBLAS GEMM: CUBLAS_STATUS_NOT_SUPPORTED (A and B of cudaDataType %d)", g.ab)
	}
	rowsA, colsA := g.m, g.k
	if g.ta == driver.OpT {
		rowsA, colsA = g.k, g.m
	}
	rowsB, colsB := g.k, g.n
	if g.tb == driver.OpT {
		rowsB, colsB = g.n, g.k
	}
	if g.m < 0 || g.n < 0 || g.k < 0 || g.lda < max(1, rowsA) || g.ldb < max(1, rowsB) || g.ldc < max(1, g.m) || g.batch < 1 {
		return fmt.Errorf("fake %s: CUBLAS_STATUS_INVALID_VALUE (m %d n %d k %d lda %d ldb %d ldc %d batch %d)",
			call, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.batch)
	}
	f.mu.Lock()
	if g.math != f.math {
		f.math = g.math
		f.launches["cublasSetMathMode"]++
	}
	f.mu.Unlock()
	f.count(call)
	span := func(ld, cols int, stride int64) int64 {
		return stride*int64(g.batch-1) + int64(ld*(cols-1)) + int64(ld)
	}
	tf32 := g.ab == driver.R32F && g.math == driver.TF32Math
	A := f.gemmOperand(g.a, span(g.lda, colsA, g.strideA), g.ab, tf32)
	B := f.gemmOperand(g.b, span(g.ldb, colsB, g.strideB), g.ab, tf32)
	C := f.f32s(g.c, span(g.ldc, g.n, g.strideC))
	for bi := range int64(g.batch) {
		a, b, c := A[bi*g.strideA:], B[bi*g.strideB:], C[bi*g.strideC:]
		for j := range g.n {
			for i := range g.m {
				var s float64
				for p := range g.k {
					var av, bv float32
					if g.ta == driver.OpT {
						av = a[p+i*g.lda]
					} else {
						av = a[i+p*g.lda]
					}
					if g.tb == driver.OpT {
						bv = b[j+p*g.ldb]
					} else {
						bv = b[p+j*g.ldb]
					}
					s += float64(av) * float64(bv)
				}
				v := float64(g.alpha) * s
				if g.beta != 0 {
					v += float64(g.beta) * float64(c[i+j*g.ldc])
				}
				c[i+j*g.ldc] = float32(v)
			}
		}
	}
	return nil
}

// gemmOperand returns the n elements of a GEMM operand at p as float32:
// the device memory itself for F32; a copy decoded exactly for BF16, or
// rounded to TF32 when tf32.
func (f *fakeDevice) gemmOperand(p driver.DevicePtr, n int64, ab driver.DataType, tf32 bool) []float32 {
	if ab == driver.R16BF {
		out := make([]float32, n)
		if err := api.DecodeFloat32(out, api.BF16, f.span(p, 2*n)); err != nil {
			panic(err)
		}
		return out
	}
	x := f.f32s(p, n)
	if !tf32 {
		return x
	}
	out := make([]float32, n)
	for i, v := range x {
		out[i] = roundTF32(v)
	}
	return out
}

// roundTF32 rounds v to TF32 (float32's exponent, 10 explicit mantissa
// bits) to nearest, ties away from zero: PTX's cvt.rna.tf32.f32, which
// adds half a unit of the last kept place to the bits and clears the 13
// below them (a carry may reach the exponent; past the largest float it
// gives infinity), and CUTLASS's default float-to-tfloat32 conversion
// (round_half_ulp_truncate). Infinities and NaNs are kept.
func roundTF32(v float32) float32 {
	bits := math.Float32bits(v)
	if bits&0x7f800000 == 0x7f800000 {
		return v
	}
	return math.Float32frombits((bits + 0x1000) &^ 0x1fff)
}

// fakeArgs reads a launch's arguments (already checked against the
// kernel's signature).
type fakeArgs []any

func (a fakeArgs) ptr(i int) driver.DevicePtr { return a[i].(driver.DevicePtr) }
func (a fakeArgs) i32(i int) int              { return int(a[i].(int32)) }
func (a fakeArgs) i64(i int) int64            { return a[i].(int64) }
func (a fakeArgs) f32(i int) float32          { return a[i].(float32) }

// launch runs the Go model of a kernel.
func (f *fakeDevice) launch(kernel string, g kernels.Geometry, args ...any) (err error) {
	if err := checkLaunch(kernel, args); err != nil {
		return err
	}
	if g.Block.X*g.Block.Y*g.Block.Z > 1024 || g.Grid.X == 0 || g.Grid.Y == 0 || g.Grid.Z == 0 || g.Shared > 48<<10 {
		return fmt.Errorf("fake device: %s: launch geometry %+v out of the device's limits", kernel, g)
	}
	defer api.Recover(&err)
	f.count(kernel)
	a := fakeArgs(args)
	switch kernel {
	case "ds_unary_f32":
		n := a.i64(3)
		dst, x := f.f32s(a.ptr(1), n), f.f32s(a.ptr(2), n)
		op := api.UnaryOp(a.i32(0))
		for i := range dst {
			dst[i] = unaryRef(op, x[i])
		}
	case "ds_affine_f32":
		n := a.i64(2)
		dst, x := f.f32s(a.ptr(0), n), f.f32s(a.ptr(1), n)
		scale, shift := a.f32(3), a.f32(4)
		for i := range dst {
			dst[i] = float32(x[i]*scale) + shift
		}
	case "ds_binary_same_f32":
		n := a.i64(4)
		op := api.BinaryOp(a.i32(0))
		dst, x, y := f.f32s(a.ptr(1), n), f.f32s(a.ptr(2), n), f.f32s(a.ptr(3), n)
		for i := range dst {
			dst[i] = binaryRef(op, x[i], y[i])
		}
	case "ds_binary_f32":
		n := a.i64(4)
		op := api.BinaryOp(a.i32(0))
		plan := decodePlan(args[5].(driver.Bytes))
		dst := f.f32s(a.ptr(1), n)
		x := unsafe.Slice((*float32)(unsafe.Pointer(&f.bytesAt(a.ptr(2))[0])), len(f.bytesAt(a.ptr(2)))/4)
		y := unsafe.Slice((*float32)(unsafe.Pointer(&f.bytesAt(a.ptr(3))[0])), len(f.bytesAt(a.ptr(3)))/4)
		for i := range n {
			ao, bo := plan.Offsets(i)
			dst[i] = binaryRef(op, x[ao], y[bo])
		}
	case "ds_rmsnorm_f32":
		rows, D := int64(g.Grid.X), int64(a.i32(3))
		dst, x := f.f32s(a.ptr(0), rows*D), f.f32s(a.ptr(1), rows*D)
		w := f.f32s(a.ptr(2), D)
		eps := a.f32(4)
		for r := range rows {
			xr, dr := x[r*D:(r+1)*D], dst[r*D:(r+1)*D]
			var ss float64
			for _, v := range xr {
				ss += float64(v) * float64(v)
			}
			inv := 1 / math.Sqrt(ss/float64(D)+float64(eps))
			for j, v := range xr {
				o := float64(v) * inv
				if w != nil {
					o *= float64(w[j])
				}
				dr[j] = float32(o)
			}
		}
	case "ds_softmax_f32", "ds_log_softmax_f32":
		rows, V := int64(g.Grid.X), int64(a.i32(2))
		dst, x := f.f32s(a.ptr(0), rows*V), f.f32s(a.ptr(1), rows*V)
		for r := range rows {
			xr, dr := x[r*V:(r+1)*V], dst[r*V:(r+1)*V]
			m := float32(math.Inf(-1))
			for _, v := range xr {
				m = max(m, v)
			}
			var sum float64
			for _, v := range xr {
				sum += math.Exp(float64(v) - float64(m))
			}
			for j, v := range xr {
				if kernel == "ds_softmax_f32" {
					dr[j] = float32(math.Exp(float64(v)-float64(m)) / sum)
				} else {
					dr[j] = float32(float64(v) - float64(m) - math.Log(sum))
				}
			}
		}
	case "ds_cross_entropy_f32":
		rows, V := int64(g.Grid.X), int64(a.i32(4))
		loss, x := f.f32s(a.ptr(0), rows), f.f32s(a.ptr(2), rows*V)
		dl := f.f32s(a.ptr(1), rows*V)
		tg := f.i32s(a.ptr(3), rows)
		ignore := int32(a.i32(5))
		bad := f.span(a.ptr(6), 8)
		for r := range rows {
			xr := x[r*V : (r+1)*V]
			var dr []float32
			if dl != nil {
				dr = dl[r*V : (r+1)*V]
			}
			t := tg[r]
			if t == ignore || t < 0 || int64(t) >= V {
				clear(dr)
				if t == ignore {
					loss[r] = 0
				} else {
					loss[r] = float32(math.NaN())
					if binary.LittleEndian.Uint64(bad) == 0 {
						binary.LittleEndian.PutUint64(bad, uint64(r)+1)
					}
				}
				continue
			}
			m := float32(math.Inf(-1))
			for _, v := range xr {
				m = max(m, v)
			}
			var sum float64
			for _, v := range xr {
				sum += float64(float32(math.Exp(float64(v - m))))
			}
			loss[r] = float32(math.Log(sum) + float64(m) - float64(xr[t]))
			for j := range dr {
				gv := float32(float64(float32(math.Exp(float64(xr[j]-m)))) / sum)
				if int32(j) == t {
					gv -= 1
				}
				dr[j] = gv
			}
		}
	case "ds_selective_scan_f32":
		B := int64(g.Grid.Y)
		T, E, N := int64(a.i32(11)), int64(a.i32(12)), int64(a.i32(13))
		y, hT, hs := f.f32s(a.ptr(0), B*T*E), f.f32s(a.ptr(1), B*E*N), f.f32s(a.ptr(2), B*T*E*N)
		X, Dt := f.f32s(a.ptr(3), B*T*E), f.f32s(a.ptr(4), B*T*E)
		A := f.f32s(a.ptr(5), E*N)
		Bm, Cm := f.f32s(a.ptr(6), B*T*N), f.f32s(a.ptr(7), B*T*N)
		D, H0, Inj := f.f32s(a.ptr(8), E), f.f32s(a.ptr(9), B*E*N), f.f32s(a.ptr(10), B*T*E*N)
		h := make([]float32, N)
		for b := range B {
			for e := range E {
				ben := (b*E + e) * N
				if H0 != nil {
					copy(h, H0[ben:ben+N])
				} else {
					clear(h)
				}
				for t := range T {
					bte := (b*T+t)*E + e
					x, dt := X[bte], Dt[bte]
					var acc float32
					for n := range N {
						hn := float32(float32(math.Exp(float64(float32(dt*A[e*N+n]))))*h[n]) + float32(float32(dt*Bm[(b*T+t)*N+n])*x)
						if hs != nil {
							hs[bte*N+n] = hn
						}
						if Inj != nil {
							hn += Inj[bte*N+n]
						}
						h[n] = hn
						acc += float32(hn * Cm[(b*T+t)*N+n])
					}
					var skip float32
					if D != nil {
						skip = D[e]
					}
					y[bte] = acc + float32(skip*x)
				}
				if hT != nil {
					copy(hT[ben:ben+N], h)
				}
			}
		}
	case "ds_retention_recurrent_f32":
		BH := int64(g.Grid.Y)
		H, T, dk, dv := int64(a.i32(7)), int64(a.i32(8)), int64(a.i32(9)), int64(a.i32(10))
		offset := a.i64(11)
		o, sT := f.f32s(a.ptr(0), BH*T*dv), f.f32s(a.ptr(1), BH*dk*dv)
		q, k, v := f.f32s(a.ptr(2), BH*T*dk), f.f32s(a.ptr(3), BH*T*dk), f.f32s(a.ptr(4), BH*T*dv)
		S0, gamma := f.f32s(a.ptr(5), BH*dk*dv), f.f32s(a.ptr(6), H)
		S := make([]float32, dk*dv)
		for bh := range BH {
			if S0 != nil {
				copy(S, S0[bh*dk*dv:(bh+1)*dk*dv])
			} else {
				clear(S)
			}
			gm := float64(gamma[bh%H])
			logG, oneMinG := math.Log(gm), 1-gm
			for t := range T {
				p := offset + t
				sp := -math.Expm1(float64(p+1)*logG) / oneMinG
				beta := 1 / math.Sqrt(sp)
				var alpha float32
				if p > 0 {
					alpha = float32(gm * math.Sqrt((-math.Expm1(float64(p)*logG)/oneMinG)/sp))
				}
				row := bh*T + t
				for j := range dv {
					vt := v[row*dv+j]
					var acc float32
					for i := range dk {
						ka := float32(beta * float64(k[row*dk+i]))
						if p > 0 {
							S[i*dv+j] = float32(alpha*S[i*dv+j]) + float32(ka*vt)
						} else {
							S[i*dv+j] = float32(ka * vt)
						}
						acc += float32(q[row*dk+i] * S[i*dv+j])
					}
					o[row*dv+j] = acc
				}
			}
			if sT != nil {
				copy(sT[bh*dk*dv:(bh+1)*dk*dv], S)
			}
		}
	case "ds_window_u32", "ds_window_u8":
		unit := int64(4)
		if kernel == "ds_window_u8" {
			unit = 1
		}
		outer, size, start, inner, length := a.i64(2), a.i64(3), a.i64(4), a.i64(5), a.i64(6)
		whole, part := f.span(a.ptr(0), unit*outer*size*inner), f.span(a.ptr(1), unit*outer*length)
		set := a.i32(7) != 0
		for i := range outer * length {
			o, j := i/length, i%length
			w := (o*size+start)*inner + j
			ws, ps := whole[unit*w:unit*(w+1)], part[unit*i:unit*(i+1)]
			if set {
				copy(ws, ps)
			} else {
				copy(ps, ws)
			}
		}
	case "ds_permute_u32", "ds_permute_u8":
		unit := int64(4)
		if kernel == "ds_permute_u8" {
			unit = 1
		}
		n := a.i64(2)
		plan := kernels.DecodePermutePlan(args[3].(driver.Bytes))
		dst := f.span(a.ptr(0), unit*n)
		src := f.span(a.ptr(1), unit*n)
		for i := range n {
			o := plan.Offset(i)
			copy(dst[unit*i:unit*(i+1)], src[unit*o:unit*(o+1)])
		}
	case "ds_gather_f32", "ds_gather_bf16":
		rows, D, V := a.i64(3), int64(a.i32(4)), int64(a.i32(5))
		dst, ids := f.f32s(a.ptr(0), rows*D), f.i32s(a.ptr(2), rows)
		bad := f.span(a.ptr(6), 8)
		var table []float32
		var raw []byte
		if kernel == "ds_gather_f32" {
			table = f.f32s(a.ptr(1), V*D)
		} else {
			raw = f.span(a.ptr(1), 2*V*D)
		}
		for i := range rows * D {
			r, j := i/D, i%D
			id := int64(ids[r])
			if id < 0 || id >= V {
				if binary.LittleEndian.Uint64(bad) == 0 {
					binary.LittleEndian.PutUint64(bad, uint64(r)+1)
				}
				continue
			}
			if table != nil {
				dst[i] = table[id*D+j]
			} else {
				dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*(id*D+j):])) << 16)
			}
		}
	case "ds_causal_conv1d_f32":
		B, T, C, K := int64(a.i32(5)), int64(a.i32(6)), int64(a.i32(7)), int64(a.i32(8))
		dst, x, w := f.f32s(a.ptr(0), B*T*C), f.f32s(a.ptr(1), B*T*C), f.f32s(a.ptr(2), C*K)
		bias, prev := f.f32s(a.ptr(3), C), f.f32s(a.ptr(4), B*(K-1)*C)
		for i := range B * T * C {
			r, c := i/C, i%C
			b, t := r/T, r%T
			var acc float32
			if bias != nil {
				acc = bias[c]
			}
			for k := range K {
				s := t + k
				var v float32
				switch {
				case s >= K-1:
					v = x[(b*T+s-(K-1))*C+c]
				case prev != nil:
					v = prev[(b*(K-1)+s)*C+c]
				default:
					continue
				}
				acc += float32(w[c*K+k] * v)
			}
			dst[i] = acc
		}
	case "ds_rotary_f32":
		rows, T, half := a.i64(3), int64(a.i32(4)), int64(a.i32(5))
		offset, inverse := a.i64(6), a.i32(7) != 0
		dst, x := f.f32s(a.ptr(0), rows*2*half), f.f32s(a.ptr(1), rows*2*half)
		theta := f.f32s(a.ptr(2), half)
		for p := range rows * half {
			r, i := p/half, p%half
			t := r % T
			phi := float32(offset+t) * theta[i]
			sd, cd := math.Sincos(float64(phi))
			cs, sn := float32(cd), float32(sd)
			if inverse {
				sn = float32(-sd)
			}
			av, bv := x[2*p], x[2*p+1]
			dst[2*p] = float32(av*cs) - float32(bv*sn)
			dst[2*p+1] = float32(bv*cs) + float32(av*sn)
		}
	case "ds_convert_bf16_f32", "ds_convert_f16_f32", "ds_convert_f64_f32", "ds_convert_i32_f32", "ds_convert_i64_f32":
		n := a.i64(2)
		from := map[string]api.DType{"ds_convert_bf16_f32": api.BF16, "ds_convert_f16_f32": api.F16,
			"ds_convert_f64_f32": api.F64, "ds_convert_i32_f32": api.I32, "ds_convert_i64_f32": api.I64}[kernel]
		dst := f.f32s(a.ptr(0), n)
		if err := api.DecodeFloat32(dst, from, f.span(a.ptr(1), int64(from.Bytes(int(n))))); err != nil {
			return err
		}
	case "ds_convert_f32_bf16", "ds_convert_f32_f16", "ds_convert_f32_f64":
		n := a.i64(2)
		to := map[string]api.DType{"ds_convert_f32_bf16": api.BF16, "ds_convert_f32_f16": api.F16, "ds_convert_f32_f64": api.F64}[kernel]
		if err := api.EncodeFloat32(f.span(a.ptr(0), int64(to.Bytes(int(n)))), to, f.f32s(a.ptr(1), n)); err != nil {
			return err
		}
	case "ds_unary_grad_f32":
		n := a.i64(4)
		op := api.UnaryOp(a.i32(0))
		dx, x, dy := f.f32s(a.ptr(1), n), f.f32s(a.ptr(2), n), f.f32s(a.ptr(3), n)
		for i := range dx {
			dx[i] = unaryGradRef(op, x[i], dy[i])
		}
	case "ds_sum_to_f32":
		n, m := a.i64(2), a.i64(3)
		plan := kernels.DecodeSumToPlan(args[4].(driver.Bytes))
		dst := f.f32s(a.ptr(0), n)
		xb := f.bytesAt(a.ptr(1))
		x := unsafe.Slice((*float32)(unsafe.Pointer(&xb[0])), len(xb)/4)
		for i := range n {
			var s float64
			for j := range m {
				s += float64(x[plan.Offsets(i, j)])
			}
			dst[i] = float32(s)
		}
	case "ds_rms_inv_f32":
		rows, D := int64(g.Grid.X), int64(a.i32(2))
		eps := a.f32(3)
		inv := unsafe.Slice((*float64)(unsafe.Pointer(&f.span(a.ptr(0), 8*rows)[0])), rows)
		x := f.f32s(a.ptr(1), rows*D)
		for r := range rows {
			var ss float64
			for _, v := range x[r*D : (r+1)*D] {
				ss += float64(v) * float64(v)
			}
			inv[r] = 1 / math.Sqrt(ss/float64(D)+float64(eps))
		}
	case "ds_rmsnorm_grad_f32":
		rows, D := int64(g.Grid.X), int64(a.i32(5))
		dx, x, dy := f.f32s(a.ptr(0), rows*D), f.f32s(a.ptr(1), rows*D), f.f32s(a.ptr(3), rows*D)
		w := f.f32s(a.ptr(2), D)
		inv := unsafe.Slice((*float64)(unsafe.Pointer(&f.span(a.ptr(4), 8*rows)[0])), rows)
		wj := func(j int64) float64 {
			if w == nil {
				return 1
			}
			return float64(w[j])
		}
		for r := range rows {
			var dot float64
			for j := range D {
				dot += float64(dy[r*D+j]) * wj(j) * float64(x[r*D+j])
			}
			c := inv[r] * inv[r] * inv[r] * dot / float64(D)
			for j := range D {
				dx[r*D+j] = float32(inv[r]*wj(j)*float64(dy[r*D+j]) - c*float64(x[r*D+j]))
			}
		}
	case "ds_rmsnorm_grad_w_f32":
		rows, D := a.i64(4), int64(a.i32(5))
		dw, x, dy := f.f32s(a.ptr(0), D), f.f32s(a.ptr(1), rows*D), f.f32s(a.ptr(2), rows*D)
		inv := unsafe.Slice((*float64)(unsafe.Pointer(&f.span(a.ptr(3), 8*rows)[0])), rows)
		for j := range D {
			var s float64
			for r := range rows {
				s += float64(dy[r*D+j]) * float64(x[r*D+j]) * inv[r]
			}
			dw[j] = float32(s)
		}
	case "ds_gather_grad_f32":
		rows, D, V := a.i64(3), int64(a.i32(4)), int64(a.i32(5))
		dt, ids, dy := f.f32s(a.ptr(0), V*D), f.i32s(a.ptr(1), rows), f.f32s(a.ptr(2), rows*D)
		bad := f.span(a.ptr(6), 8)
		for i := range rows * D {
			r, j := i/D, i%D
			id := int64(ids[r])
			if id < 0 || id >= V {
				if binary.LittleEndian.Uint64(bad) == 0 {
					binary.LittleEndian.PutUint64(bad, uint64(r)+1)
				}
				continue
			}
			dt[id*D+j] += dy[i]
		}
	default:
		model, ok := fakeKernels[kernel]
		if !ok {
			return fmt.Errorf("fake device: kernel %s is not modelled", kernel)
		}
		model(f, g, a)
	}
	return nil
}

// fakeKernels holds the Go models of kernels kept in files of their own
// (registered from init), next to the switch in launch.
var fakeKernels = map[string]func(f *fakeDevice, g kernels.Geometry, a fakeArgs){}

// decodePlan reads ds_binary_f32's DsBroadcast back from its bytes.
func decodePlan(raw driver.Bytes) kernels.BroadcastPlan {
	u := func(i int) int64 { return int64(binary.LittleEndian.Uint64(raw[8*i:])) }
	nd := int(u(0))
	var p kernels.BroadcastPlan
	for d := range nd {
		p.Dims = append(p.Dims, u(1+d))
		p.AStride = append(p.AStride, u(1+kernels.MaxBroadcastDims+d))
		p.BStride = append(p.BStride, u(1+2*kernels.MaxBroadcastDims+d))
	}
	return p
}

// unaryRef is api.UnaryOp's function, computed in float64 and rounded.
func unaryRef(op api.UnaryOp, x float32) float32 {
	v := float64(x)
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	switch op {
	case api.OpNeg:
		return -x
	case api.OpExp:
		return float32(math.Exp(v))
	case api.OpLog:
		return float32(math.Log(v))
	case api.OpSqrt:
		return float32(math.Sqrt(v))
	case api.OpRsqrt:
		return float32(1 / math.Sqrt(v))
	case api.OpSquare:
		return x * x
	case api.OpAbs:
		return float32(math.Abs(v))
	case api.OpSigmoid:
		return float32(sig(v))
	case api.OpSilu:
		return float32(v * sig(v))
	case api.OpSoftplus:
		if x > 20 {
			return x
		}
		return float32(math.Log1p(math.Exp(v)))
	case api.OpTanh:
		return float32(math.Tanh(v))
	case api.OpRelu:
		if x > 0 {
			return x
		}
		return 0
	}
	return float32(math.NaN())
}

// unaryGradRef is ds_unary_grad_f32's dy * op'(x), in float64 and rounded.
func unaryGradRef(op api.UnaryOp, xf, dyf float32) float32 {
	v, g := float64(xf), float64(dyf)
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	switch op {
	case api.OpNeg:
		return float32(-g)
	case api.OpExp:
		return float32(g * math.Exp(v))
	case api.OpLog:
		return float32(g / v)
	case api.OpSqrt:
		return float32(g * 0.5 / math.Sqrt(v))
	case api.OpRsqrt:
		return float32(g * -0.5 / (v * math.Sqrt(v)))
	case api.OpSquare:
		return float32(g * 2 * v)
	case api.OpAbs:
		switch {
		case xf > 0:
			return dyf
		case xf < 0:
			return -dyf
		}
		return 0
	case api.OpSigmoid:
		s := sig(v)
		return float32(g * s * (1 - s))
	case api.OpSilu:
		s := sig(v)
		return float32(g * s * (1 + v*(1-s)))
	case api.OpSoftplus:
		if xf > 20 {
			return dyf
		}
		return float32(g * sig(v))
	case api.OpTanh:
		t := math.Tanh(v)
		return float32(g * (1 - t*t))
	case api.OpRelu:
		if xf > 0 {
			return dyf
		}
		return 0
	}
	return float32(math.NaN())
}

func binaryRef(op api.BinaryOp, a, b float32) float32 {
	switch op {
	case api.OpAdd:
		return a + b
	case api.OpSub:
		return a - b
	case api.OpMul:
		return a * b
	case api.OpDiv:
		return a / b
	}
	return float32(math.NaN())
}
