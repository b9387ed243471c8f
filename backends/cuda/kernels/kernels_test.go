package kernels

import (
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
)

// requireNVRTC, set to 1 (make cuda-test does), turns a missing NVRTC into
// a failure instead of a skip.
const requireNVRTC = "DENSESSM_REQUIRE_NVRTC"

func loadNVRTC(t *testing.T) *driver.NVRTC {
	t.Helper()
	n, err := driver.LoadNVRTC()
	if err != nil {
		if os.Getenv(requireNVRTC) == "1" {
			t.Fatalf("%s=1 and %v", requireNVRTC, err)
		}
		t.Skipf("SKIPPED: %v; `make cuda-test` installs the nvidia-cuda-nvrtc wheel and sets %s", err, driver.NVRTCEnv)
	}
	return n
}

// The kernels the backend will look up, by source.
var wantKernels = map[string][]string{
	"conv.cu": {"ds_causal_conv1d_f32", "ds_causal_conv1d_grad_x_f32", "ds_causal_conv1d_grad_w_f32", "ds_rotary_f32"},
	"convert.cu": {"ds_convert_bf16_f32", "ds_convert_f32_bf16", "ds_convert_f16_f32", "ds_convert_f32_f16",
		"ds_convert_f64_f32", "ds_convert_f32_f64", "ds_convert_i32_f32", "ds_convert_i64_f32",
		"ds_convert_i64_i32", "ds_convert_q8_0_f32", "ds_convert_f32_q8_0"},
	"grad.cu": {"ds_unary_grad_f32", "ds_sum_to_f32", "ds_rms_inv_f32", "ds_rmsnorm_grad_f32", "ds_rmsnorm_grad_w_f32",
		"ds_gather_grad_f32"},
	"elementwise.cu": {"ds_unary_f32", "ds_affine_f32", "ds_binary_f32", "ds_binary_same_f32"},
	"layout.cu":      {"ds_window_u32", "ds_window_u8", "ds_permute_u32", "ds_permute_u8", "ds_gather_f32", "ds_gather_bf16", "ds_gather_q8_0"},
	"retention.cu": {"ds_retention_recurrent_f32", "ds_retention_parallel_scores_f32", "ds_retention_decay_mask_f32",
		"ds_retention_scale_rows_f32", "ds_retention_state_decay_f32"},
	"rmsnorm.cu":   {"ds_rmsnorm_f32"},
	"scan_grad.cu": {"ds_selective_scan_grad_f32", "ds_scan_grad_sum_f32"},
	"scan.cu":      {"ds_selective_scan_f32"},
	"softmax.cu":   {"ds_softmax_f32", "ds_log_softmax_f32", "ds_softmax_grad_f32", "ds_log_softmax_grad_f32", "ds_cross_entropy_f32"},
}

func TestSources(t *testing.T) {
	src := Sources()
	got := map[string][]string{}
	for _, s := range src {
		got[s.Name] = s.Kernels
	}
	for name, ks := range wantKernels {
		if !slices.Equal(got[name], ks) {
			t.Errorf("%s: kernels %v, want %v", name, got[name], ks)
		}
	}
	if len(got) != len(wantKernels) {
		t.Errorf("sources %v", got)
	}
	if h := Headers(); len(h) != 1 || h[0].Name != "common.cuh" {
		t.Errorf("headers %v", h)
	}
}

// Every source compiles with NVRTC to PTX for sm_80 (A100) and sm_90
// (H100) without a warning, and the PTX has an entry for each kernel; and
// to a CUBIN for sm_90. This needs libnvrtc, not a GPU.
func TestCompileAll(t *testing.T) {
	n := loadNVRTC(t)
	t.Logf("NVRTC %d.%d at %s", n.Major, n.Minor, n.Path)
	start := time.Now()
	for _, src := range Sources() {
		for _, tg := range []Target{{Arch: 80}, {Arch: 90}, {Arch: 90, CUBIN: true}} {
			img, log, err := n.Compile( // no disk cache: every source is compiled here
				src.Name, src.Code, Headers(), Options(tg), tg.CUBIN)
			if err != nil {
				t.Errorf("%s for %s: %v", src.Name, tg, err)
				continue
			}
			if strings.TrimSpace(log) != "" {
				t.Errorf("%s for %s: compiler warnings:\n%s", src.Name, tg, log)
			}
			if tg.CUBIN {
				if !strings.HasPrefix(string(img), "\x7fELF") {
					t.Errorf("%s for %s: not an ELF image", src.Name, tg)
				}
				for _, k := range src.Kernels {
					if !strings.Contains(string(img), k) {
						t.Errorf("%s for %s: no symbol %s", src.Name, tg, k)
					}
				}
				continue
			}
			if !strings.Contains(string(img), ".target sm_"+tg.String()[len("compute_"):]) {
				t.Errorf("%s for %s: PTX for another target", src.Name, tg)
			}
			for _, k := range src.Kernels {
				if !strings.Contains(string(img), ".entry "+k+"(") {
					t.Errorf("%s for %s: PTX lacks the entry %s", src.Name, tg, k)
				}
			}
		}
	}
	t.Logf("%d sources × 3 targets in %v", len(Sources()), time.Since(start).Round(time.Millisecond))
}

func TestCache(t *testing.T) {
	n := loadNVRTC(t)
	dir := t.TempDir()
	c := &Compiler{NVRTC: n, Dir: dir}
	src := Sources()[0]
	tg := Target{Arch: 80}
	img, cached, err := c.Compile(src, tg)
	if err != nil || cached {
		t.Fatalf("first compile: cached %v, %v", cached, err)
	}
	p := c.CachePath(src, tg)
	if b, err := os.ReadFile(p); err != nil || string(b) != string(img) {
		t.Fatalf("cache entry %s: %v", p, err)
	}
	img2, cached, err := c.Compile(src, tg)
	if err != nil || !cached || string(img2) != string(img) {
		t.Fatalf("second compile: cached %v, same %v, %v", cached, string(img2) == string(img), err)
	}
	// Another target, another source text or another NVRTC version: another key.
	keys := map[string]bool{c.Key(src, tg): true, c.Key(src, Target{Arch: 90}): true, c.Key(src, Target{Arch: 80, CUBIN: true}): true}
	src2 := src
	src2.Code += "\n"
	keys[c.Key(src2, tg)] = true
	n2 := *n
	n2.Minor++
	keys[(&Compiler{NVRTC: &n2}).Key(src, tg)] = true
	if len(keys) != 5 {
		t.Errorf("keys collide: %v", keys)
	}
}

func TestChooseTarget(t *testing.T) {
	archs := []int{75, 80, 86, 89, 90, 100, 120}
	for _, c := range []struct {
		arch int
		want Target
	}{{80, Target{80, true}}, {90, Target{90, true}}, {87, Target{86, false}}, {130, Target{120, false}}} {
		got, err := ChooseTarget(c.arch, archs)
		if err != nil || got != c.want {
			t.Errorf("ChooseTarget(%d) = %v, %v; want %v", c.arch, got, err, c.want)
		}
	}
	if _, err := ChooseTarget(70, archs); !errors.Is(err, api.ErrUnsupported) {
		t.Errorf("sm_70 with NVRTC from 75: %v", err)
	}
}

// naiveOffsets broadcasts by the definition: the multi-index of output
// element i, each operand's index the same or 0 on its size-1 axes.
func naiveOffsets(dst, s []int, i int) int {
	idx := make([]int, len(dst))
	for d := len(dst) - 1; d >= 0; d-- {
		idx[d] = i % dst[d]
		i /= dst[d]
	}
	off := 0
	for j := range s {
		d := j + len(dst) - len(s)
		x := idx[d]
		if s[j] == 1 {
			x = 0
		}
		off = off*s[j] + x
	}
	return off
}

// The plan the kernel's index arithmetic follows reads the elements the
// CPU backend's broadcasting reads (api.Kernels.Binary), on random shapes.
func TestPlanBroadcast(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 2000 {
		r := 1 + rng.IntN(6)
		dst := make([]int, r)
		for i := range dst {
			dst[i] = 1 + rng.IntN(4)
		}
		mk := func() []int {
			s := slices.Clone(dst[rng.IntN(r+1):])
			for i := range s {
				if rng.IntN(3) == 0 {
					s[i] = 1
				}
			}
			return s
		}
		a, b := mk(), mk()
		p, err := PlanBroadcast(dst, a, b)
		if err != nil {
			t.Fatalf("trial %d: %v %v %v: %v", trial, dst, a, b, err)
		}
		total := 1
		for _, d := range dst {
			total *= d
		}
		for i := range total {
			ao, bo := p.Offsets(int64(i))
			if int(ao) != naiveOffsets(dst, a, i) || int(bo) != naiveOffsets(dst, b, i) {
				t.Fatalf("trial %d: %v = %v op %v, plan %+v: element %d reads a[%d] b[%d], want a[%d] b[%d]",
					trial, dst, a, b, p, i, ao, bo, naiveOffsets(dst, a, i), naiveOffsets(dst, b, i))
			}
		}
		if len(p.Bytes()) != 200 {
			t.Fatal("DsBroadcast is 200 bytes")
		}
	}
	// Same shapes merge into one axis; a row vector into two.
	if p, _ := PlanBroadcast([]int{2, 3, 4}, []int{2, 3, 4}, []int{2, 3, 4}); len(p.Dims) != 1 || p.Dims[0] != 24 {
		t.Errorf("same shapes: %+v", p)
	}
	if p, _ := PlanBroadcast([]int{2, 3, 4}, []int{2, 3, 4}, []int{4}); len(p.Dims) != 2 || p.Dims[0] != 6 {
		t.Errorf("row vector: %+v", p)
	}
	if _, err := PlanBroadcast([]int{2, 3}, []int{2, 3}, []int{2}); !errors.Is(err, api.ErrShape) {
		t.Errorf("[2] into [2,3]: %v", err)
	}
	// Alternating broadcast axes that cannot merge: more than 8 dimensions.
	dst := []int{2, 2, 2, 2, 2, 2, 2, 2, 2, 2}
	a := []int{2, 1, 2, 1, 2, 1, 2, 1, 2, 1}
	if _, err := PlanBroadcast(dst, a, dst); !errors.Is(err, api.ErrUnsupported) {
		t.Errorf("10 dimensions: %v", err)
	}
}

func TestGeometry(t *testing.T) {
	for N := 1; N <= 256; N++ {
		g, tc, err := ScanGeometry(2, 100, N)
		if err != nil {
			t.Fatal(err)
		}
		L, ch := int(g.Block.X), int(g.Block.Y)
		if L&(L-1) != 0 || L > 32 || N > scanMaxStates*L || (L*ch)%32 != 0 || L*ch > 1024 {
			t.Fatalf("N = %d: block %+v", N, g.Block)
		}
		if int(g.Grid.X)*ch < 100 || g.Grid.Y != 2 || int(g.Shared) != 2*tc*N*4 || g.Shared > 48<<10 {
			t.Fatalf("N = %d: %+v", N, g)
		}
	}
	if _, _, err := ScanGeometry(1, 1, 257); !errors.Is(err, api.ErrUnsupported) {
		t.Errorf("N = 257: %v", err)
	}
	for dk := 1; dk <= 512; dk++ {
		g, err := RetentionGeometry(2, 3, dk, 70)
		if err != nil {
			t.Fatal(err)
		}
		ry := int(g.Block.Y)
		if g.Block.X != 32 || ry*retMaxRows < dk || 32*ry > 1024 || g.Grid.X != 3 || g.Grid.Y != 6 || g.Shared > 48<<10 {
			t.Fatalf("dk = %d: %+v", dk, g)
		}
	}
	if _, err := RetentionGeometry(1, 1, 513, 1); !errors.Is(err, api.ErrUnsupported) {
		t.Errorf("dk = 513: %v", err)
	}
}

// PlanPermute's index arithmetic against permutation by the definition, on
// random shapes and permutations (size-1 axes, merges, up to rank 8).
func TestPlanPermute(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		rank := 1 + rng.IntN(6)
		shape := make([]int, rank)
		for i := range shape {
			shape[i] = 1 + rng.IntN(3)
		}
		perm := rng.Perm(rank)
		p, err := PlanPermute(shape, perm)
		if err != nil {
			t.Fatalf("%v %v: %v", shape, perm, err)
		}
		if q := DecodePermutePlan(p.Bytes()); !slices.Equal(q.Dims, p.Dims) || !slices.Equal(q.Stride, p.Stride) {
			t.Fatalf("%v: bytes read back as %v", p, q)
		}
		strides := make([]int, rank)
		acc := 1
		for i := rank - 1; i >= 0; i-- {
			strides[i], acc = acc, acc*shape[i]
		}
		idx := make([]int, rank) // dst's index, row-major
		for i := range int64(acc) {
			want := 0
			for d := range rank {
				want += idx[d] * strides[perm[d]]
			}
			if got := p.Offset(i); got != int64(want) {
				t.Fatalf("%v by %v, plan %v: element %d reads %d, want %d", shape, perm, p, i, got, want)
			}
			for d := rank - 1; d >= 0; d-- {
				if idx[d]++; idx[d] < shape[perm[d]] {
					break
				}
				idx[d] = 0
			}
		}
	}
	if _, err := PlanPermute([]int{2, 2, 2, 2, 2, 2, 2, 2, 2}, []int{8, 7, 6, 5, 4, 3, 2, 1, 0}); !errors.Is(err, api.ErrUnsupported) {
		t.Fatalf("9 unmergeable axes: %v", err)
	}
}
