package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/densessm/densessm/api"
)

// The benchmarks of scripts/gpu-check.sh, on the GPU (skipped where there
// is none, failed under DENSESSM_REQUIRE_GPU=1). With DENSESSM_CUDA_FAKE=1
// they run on the fake device at tiny sizes instead, so that the check's
// plumbing (names, metrics, the table) can be tried without a GPU; their
// rates then mean nothing.
//
// Each reports its rate (GB/s, TFLOP/s or tok/s) and host/op, the calls of
// the host fallback per operation (0 when everything ran on the device).
// The GB/s of a kernel count the bytes it must move at least: every input
// read once and every output written once (each benchmark says which), so
// that the rate divided by the copy's (BenchmarkBandwidth) is the share of
// the memory bandwidth it reaches; ceiling-% reports that share.

// benchBackend returns the backend of the benchmarks and whether it is the
// fake device (DENSESSM_CUDA_FAKE=1: tiny sizes).
func benchBackend(b *testing.B) (*Backend, bool) {
	if os.Getenv(FakeEnv) == "1" {
		return newFake(b, Options{}), true
	}
	return newDevice(b), false
}

// pick returns tiny on the fake device, else full.
func pick[T any](fake bool, full, tiny T) T {
	if fake {
		return tiny
	}
	return full
}

// timeOps runs op n times and waits for the device; it returns the seconds
// that took.
func timeOps(be *Backend, op func(), n int) float64 {
	start := time.Now()
	for range n {
		op()
	}
	be.Sync()
	return time.Since(start).Seconds()
}

// hostCalls returns the host fallback's calls so far, all ops together.
func hostCalls(be *Backend) int {
	n := 0
	for _, c := range be.HostOps() {
		n += c
	}
	return n
}

// measure times b.N calls of op after an untimed one, the device
// synchronised inside the timer, and reports amount per call per second
// in unit (amount 1e9 bytes for GB/s, 1e12 flops for TFLOP/s) and host/op.
func measure(b *testing.B, be *Backend, op func(), amount float64, unit string) float64 {
	op()
	be.Sync()
	host := hostCalls(be)
	b.ResetTimer()
	timeOps(be, op, b.N)
	b.StopTimer()
	rate := amount * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, unit)
	b.ReportMetric(float64(hostCalls(be)-host)/float64(b.N), "host/op")
	return rate
}

// copyElems is the float32 count of each buffer of the bandwidth ceiling:
// 512 MiB, ten times the H100's and H200's L2.
func copyElems(fake bool) int { return pick(fake, 1<<27, 1<<14) }

// ceiling is the device's bandwidth in GB/s (bytes read and written by a
// device-to-device Copy), measured once per process for ceiling-%.
var ceiling struct {
	once sync.Once
	gbps float64
}

// measureBytes is measure in GB/s of bytes moved per call, also reporting
// the rate as a percentage of the copy's (ceiling-%).
func measureBytes(b *testing.B, be *Backend, fake bool, op func(), bytes int) {
	ceiling.once.Do(func() {
		n := copyElems(fake)
		src, dst := be.Alloc(api.F32, n), be.Alloc(api.F32, n)
		defer be.Free(src)
		defer be.Free(dst)
		cp := func() { be.Copy(dst, src) }
		timeOps(be, cp, 1)
		const reps = 10
		ceiling.gbps = 8 * float64(n) * reps / timeOps(be, cp, reps) / 1e9
	})
	rate := measure(b, be, op, float64(bytes)/1e9, "GB/s")
	b.ReportMetric(100*rate/ceiling.gbps, "ceiling-%")
}

// randomTensor uploads n values uniform in [lo, hi) in the given shape.
func randomTensor(be api.Backend, rng *rand.Rand, lo, hi float32, shape ...int) api.Tensor {
	data := make([]float32, api.Shape(shape).NumElements())
	for i := range data {
		data[i] = lo + (hi-lo)*rng.Float32()
	}
	return api.FromFloat32s(be, data, shape...)
}

// BenchmarkBandwidth times a device-to-device Copy of 512 MiB, reporting
// GB/s of the bytes read and written (2 x 512 MiB a copy): the ceiling the
// kernels' GB/s are set against.
func BenchmarkBandwidth(b *testing.B) {
	be, fake := benchBackend(b)
	n := copyElems(fake)
	src, dst := be.Alloc(api.F32, n), be.Alloc(api.F32, n)
	be.Fill(src, 1)
	measure(b, be, func() { be.Copy(dst, src) }, 8*float64(n)/1e9, "GB/s")
}

// scanShape is a selective scan's B, T, E, N: mamba-130m's inner width
// (E = 1536, N = 16) over a batch of 8 sequences of 512 tokens.
func scanShape(fake bool) (B, T, E, N int) {
	if fake {
		return 1, 8, 16, 4
	}
	return 8, 512, 1536, 16
}

// scanInputs returns the scan's inputs (D, no H0, no Inject) with values
// in a model's ranges.
func scanInputs(be api.Backend, B, T, E, N int) api.ScanArgs {
	rng := rand.New(rand.NewPCG(1, 2))
	return api.ScanArgs{
		X: randomTensor(be, rng, -1, 1, B, T, E), Delta: randomTensor(be, rng, 0.001, 0.1, B, T, E),
		A: randomTensor(be, rng, -2, -0.5, E, N), Bm: randomTensor(be, rng, -1, 1, B, T, N),
		Cm: randomTensor(be, rng, -1, 1, B, T, N), D: randomTensor(be, rng, -1, 1, E),
	}
}

// BenchmarkSelectiveScan times SelectiveScan at mamba-130m's shape with D,
// without H0 or Inject, y and hT written (no hs). Bytes: X, Delta, Bm, Cm,
// A and D read, y and hT written: 4 (3BTE + 2BTN + EN + E + BEN).
func BenchmarkSelectiveScan(b *testing.B) {
	be, fake := benchBackend(b)
	B, T, E, N := scanShape(fake)
	b.Run(fmt.Sprintf("B=%d,T=%d,E=%d,N=%d", B, T, E, N), func(b *testing.B) {
		in := scanInputs(be, B, T, E, N)
		y, hT := be.Alloc(api.F32, B, T, E), be.Alloc(api.F32, B, E, N)
		measureBytes(b, be, fake, func() { be.SelectiveScan(y, hT, nil, in) }, 4*(3*B*T*E+2*B*T*N+E*N+E+B*E*N))
	})
}

// BenchmarkSelectiveScanGrad times SelectiveScanGrad at the same shape,
// every input's gradient asked for from dy alone (no dhT, dhs). Bytes: X,
// Delta, dy, Bm, Cm, A and D read, dX, dDelta, dBm, dCm, dA and dD written:
// 4 (5BTE + 4BTN + 2EN + 2E).
func BenchmarkSelectiveScanGrad(b *testing.B) {
	be, fake := benchBackend(b)
	B, T, E, N := scanShape(fake)
	b.Run(fmt.Sprintf("B=%d,T=%d,E=%d,N=%d", B, T, E, N), func(b *testing.B) {
		in := scanInputs(be, B, T, E, N)
		dy := randomTensor(be, rand.New(rand.NewPCG(3, 4)), -1, 1, B, T, E)
		g := api.ScanGrads{
			X: be.Alloc(api.F32, B, T, E), Delta: be.Alloc(api.F32, B, T, E), A: be.Alloc(api.F32, E, N),
			Bm: be.Alloc(api.F32, B, T, N), Cm: be.Alloc(api.F32, B, T, N), D: be.Alloc(api.F32, E),
		}
		measureBytes(b, be, fake, func() { be.SelectiveScanGrad(g, in, dy, nil, nil) }, 4*(5*B*T*E+4*B*T*N+2*E*N+2*E))
	})
}

// retentionCase is one retention benchmark: a form at a shape, and whether
// the state S0 is read (and advanced in place) and sT written.
type retentionCase struct {
	form         api.RetentionForm
	B, H, T      int
	dk, dv       int
	state, final bool
}

// retentionCases are DenseRetNet-350M's two heads (H = 2, dk = 384, dv = 1536):
// a decode step (recurrent, T = 1, the state advanced in place) and
// training's or a prefill's 8 sequences of 512 tokens (chunkwise in chunks
// of 64 with the final state written, and parallel).
func retentionCases(fake bool, grad bool) []retentionCase {
	H, dk, dv, B, T := 2, 384, 1536, 8, 512
	if fake {
		dk, dv, B, T = 8, 16, 1, 8
	}
	cases := []retentionCase{
		{form: api.RetentionChunkwise, B: B, H: H, T: T, dk: dk, dv: dv, final: !grad},
		{form: api.RetentionParallel, B: B, H: H, T: T, dk: dk, dv: dv},
	}
	if !grad {
		cases = append([]retentionCase{{form: api.RetentionRecurrent, B: 1, H: H, T: 1, dk: dk, dv: dv, state: true, final: true}}, cases...)
	}
	return cases
}

func (c retentionCase) String() string {
	return fmt.Sprintf("%v/B=%d,H=%d,T=%d,dk=%d,dv=%d", c.form, c.B, c.H, c.T, c.dk, c.dv)
}

// args returns the case's random inputs (K scaled by dk^-0.5, the decays
// of DenseRetNet's two heads).
func (c retentionCase) args(be api.Backend) api.RetentionArgs {
	rng := rand.New(rand.NewPCG(5, 6))
	s := float32(1 / math.Sqrt(float64(c.dk)))
	in := api.RetentionArgs{
		Q: randomTensor(be, rng, -1, 1, c.B, c.H, c.T, c.dk), K: randomTensor(be, rng, -s, s, c.B, c.H, c.T, c.dk),
		V: randomTensor(be, rng, -1, 1, c.B, c.H, c.T, c.dv), Gamma: []float32{1 - 1.0/32, 1 - 1.0/64}, Chunk: 64,
	}
	if c.state {
		in.S0, in.Offset = randomTensor(be, rng, -1, 1, c.B, c.H, c.dk, c.dv), 100
	}
	return in
}

// BenchmarkRetention times Retention in each form. Bytes: Q, K, V and S0
// (when the case has one) read, o and sT (when written) written:
// 4 (BHT(2dk + 2dv) + (reads + writes of the state) BHdk dv).
func BenchmarkRetention(b *testing.B) {
	be, fake := benchBackend(b)
	for _, c := range retentionCases(fake, false) {
		b.Run(c.String(), func(b *testing.B) {
			in := c.args(be)
			o := be.Alloc(api.F32, c.B, c.H, c.T, c.dv)
			var sT api.Tensor
			states := 0
			if c.state {
				sT, states = in.S0, states+1
			} else if c.final {
				sT = be.Alloc(api.F32, c.B, c.H, c.dk, c.dv)
			}
			if c.final {
				states++
			}
			bytes := 4 * (c.B*c.H*c.T*(2*c.dk+2*c.dv) + states*c.B*c.H*c.dk*c.dv)
			measureBytes(b, be, fake, func() { be.Retention(c.form, o, sT, in) }, bytes)
		})
	}
}

// BenchmarkRetentionGrad times RetentionGrad in the chunkwise and parallel
// forms, from do alone (no S0, no dsT), dQ, dK and dV asked for. Bytes: Q,
// K, V and do read, dQ, dK and dV written: 4 BHT (4dk + 3dv).
func BenchmarkRetentionGrad(b *testing.B) {
	be, fake := benchBackend(b)
	for _, c := range retentionCases(fake, true) {
		b.Run(c.String(), func(b *testing.B) {
			in := c.args(be)
			do := randomTensor(be, rand.New(rand.NewPCG(7, 8)), -1, 1, c.B, c.H, c.T, c.dv)
			g := api.RetentionGrads{
				Q: be.Alloc(api.F32, c.B, c.H, c.T, c.dk), K: be.Alloc(api.F32, c.B, c.H, c.T, c.dk),
				V: be.Alloc(api.F32, c.B, c.H, c.T, c.dv),
			}
			bytes := 4 * c.B * c.H * c.T * (4*c.dk + 3*c.dv)
			measureBytes(b, be, fake, func() { be.RetentionGrad(c.form, g, in, do, nil) }, bytes)
		})
	}
}

// BenchmarkGEMM times MatMul of square float32 matrices of random values
// (x W^T, as the models' linear layers; float32 arithmetic, no TF32),
// reporting TFLOP/s (2n³ flops a product), at the sizes
// bench/torch_kernels.py times torch.matmul.
func BenchmarkGEMM(b *testing.B) { benchGEMM(b, GEMMFP32) }

// BenchmarkGEMMTF32 is BenchmarkGEMM with Options.GEMM = GEMMTF32 (the
// operands rounded to TF32 on tensor cores, float32 accumulation).
func BenchmarkGEMMTF32(b *testing.B) { benchGEMM(b, GEMMTF32) }

// BenchmarkGEMMBF16 is BenchmarkGEMM with Options.GEMM = GEMMBF16 and W
// stored as BF16, as in a model built with Weights = BF16: each product
// converts x to BF16 (ds_convert_f32_bf16, counted in the time) and runs
// cublasGemmEx with float32 accumulation.
func BenchmarkGEMMBF16(b *testing.B) { benchGEMM(b, GEMMBF16) }

// benchGEMM is the GEMM benchmarks' body in precision p.
func benchGEMM(b *testing.B, p GEMMPrecision) {
	be, fake := benchBackend(b)
	be.gemm = p // as Options.GEMM would set it
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range pick(fake, []int{256, 1024, 2048, 4096}, []int{32, 64}) {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			x, w, y := randomTensor(be, rng, -1, 1, n, n), randomTensor(be, rng, -1, 1, n, n), be.Alloc(api.F32, n, n)
			defer be.Free(x)
			defer be.Free(y)
			if p == GEMMBF16 {
				w16 := be.Alloc(api.BF16, n, n)
				be.Convert(w16, w)
				be.Free(w)
				w = w16
			}
			defer be.Free(w)
			measure(b, be, func() { be.MatMul(y, x, w, false, true, 1, 0) }, 2*float64(n)*float64(n)*float64(n)/1e12, "TFLOP/s")
		})
	}
}

// BenchmarkDecode times one decode step (Model.Step, logits downloaded to
// the host) of a mid-sized Mamba and RetNet (12 layers, 768 wide, a
// vocabulary of 8192) in this process, reporting tokens/s. (The check's
// model rows come from `densessm bench model --backend cuda` through the
// plugin instead, at mamba-130m's and DenseRetNet-350M's shapes.)
func BenchmarkDecode(b *testing.B) {
	be, fake := benchBackend(b)
	configs := map[string]string{
		"mamba":  `{"vocab_size": 8192, "hidden_size": 768, "num_hidden_layers": 12, "state_size": 16}`,
		"retnet": `{"vocab_size": 8192, "decoder_embed_dim": 768, "decoder_retention_heads": 8, "decoder_ffn_embed_dim": 1536, "decoder_layers": 12, "activation_fn": "swish"}`,
	}
	if fake {
		configs = tinyConfigs
	}
	for _, name := range []string{"mamba", "retnet"} {
		b.Run(name, func(b *testing.B) {
			arch, err := api.LookupArchitecture(name)
			if err != nil {
				b.Fatal(err)
			}
			cfg, err := arch.ParseConfig([]byte(configs[name]))
			if err != nil {
				b.Fatal(err)
			}
			m, err := arch.New(b.Context(), cfg, api.BuildOptions{On: be, Seed: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			s, err := m.NewState(1)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			tok := []int32{1}
			step := func() {
				logits, err := m.Step(b.Context(), s, tok)
				if err != nil {
					b.Fatal(err)
				}
				api.Float32s(logits)
			}
			measure(b, be, step, 1, "tok/s")
		})
	}
}
