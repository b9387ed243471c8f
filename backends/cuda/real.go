package cuda

import (
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// realDevice is a GPU through the driver API, NVRTC and cuBLAS: one
// primary context, one stream that every copy, fill, kernel and GEMM is
// queued on, one cuBLAS handle on that stream (float32 math, no TF32,
// unless a GEMM asks for TF32: gemmCall.math), and the kernel modules
// compiled with NVRTC (through the disk cache of backends/cuda/kernels),
// or the prebuilt PTX where there is no NVRTC, loaded the first time one
// of their kernels is launched.
//
// Driver calls act on the calling OS thread's current context, so each
// method locks its goroutine to its thread and makes the context current
// first; a mutex serializes the methods (the cuBLAS handle and the stream
// are not for concurrent use).
type realDevice struct {
	mu     sync.Mutex
	drv    *driver.Driver
	blas   *driver.CUBLAS
	nvrtc  *driver.NVRTC
	dev    driver.Device
	ctx    driver.Context
	stream driver.Stream
	handle driver.Handle
	math   driver.MathMode // the handle's math mode
	name   string
	arch   int
	target kernels.Target
	comp   *kernels.Compiler // nil: the prebuilt PTX is loaded
	// noNVRTC is why the prebuilt PTX is used (nil with NVRTC).
	noNVRTC error

	modules map[string]driver.Module   // by source file
	funcs   map[string]driver.Function // by kernel
}

// openRealDevice loads the driver, cuBLAS and NVRTC and opens device
// ordinal. Without a driver the error is the driver's *LoadError (wrapping
// api.ErrUnsupported).
func openRealDevice(ordinal int) (dev *realDevice, err error) {
	drv, err := driver.LoadDriver()
	if err != nil {
		return nil, err
	}
	n, err := drv.DeviceCount()
	if err != nil {
		return nil, err
	}
	if ordinal >= n {
		return nil, fmt.Errorf("cuda: device %d asked for, %d present: %w", ordinal, n, errNoDevice)
	}
	blas, err := driver.LoadCUBLAS()
	if err != nil {
		return nil, err
	}
	d := &realDevice{drv: drv, blas: blas, modules: map[string]driver.Module{}, funcs: map[string]driver.Function{}}
	if d.dev, err = drv.DeviceGet(ordinal); err != nil {
		return nil, err
	}
	if d.name, err = drv.DeviceName(d.dev); err != nil {
		return nil, err
	}
	if d.arch, err = drv.ComputeCapability(d.dev); err != nil {
		return nil, err
	}
	if err := d.chooseKernels(); err != nil {
		return nil, err
	}
	if d.ctx, err = drv.PrimaryContext(d.dev); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = drv.ReleasePrimaryContext(d.dev)
		}
	}()
	err = d.do(func() error {
		var err error
		if d.stream, err = drv.StreamCreate(driver.StreamNonBlocking); err != nil {
			return err
		}
		if d.handle, err = blas.Create(); err != nil {
			return err
		}
		return blas.SetStream(d.handle, d.stream)
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// PrebuiltEnv, set to 1, makes the backend load the prebuilt PTX
// (kernels.Prebuilt) even where NVRTC is found, to test that path.
const PrebuiltEnv = "DENSESSM_CUDA_PREBUILT"

// chooseKernels decides how the kernels are built for the device: with
// NVRTC (a CUBIN for its architecture, or PTX; through the disk cache)
// when libnvrtc loads, else the prebuilt PTX for kernels.PrebuiltTarget,
// which the driver's JIT compiles for the device.
func (d *realDevice) chooseKernels() error {
	var nvErr error
	if os.Getenv(PrebuiltEnv) == "1" {
		nvErr = fmt.Errorf("%s=1", PrebuiltEnv)
	} else if d.nvrtc, nvErr = driver.LoadNVRTC(); nvErr == nil {
		archs, err := d.nvrtc.SupportedArchs()
		if err != nil {
			return err
		}
		if d.target, err = kernels.ChooseTarget(d.arch, archs); err != nil {
			return err
		}
		d.comp = &kernels.Compiler{NVRTC: d.nvrtc, Dir: kernels.DefaultCacheDir()}
		return nil
	}
	d.target = kernels.PrebuiltTarget
	if d.arch < d.target.Arch {
		return fmt.Errorf("cuda: %s has compute capability %d.%d, and the prebuilt kernels need %d.%d or newer without NVRTC (%v): %w",
			d.name, d.arch/10, d.arch%10, d.target.Arch/10, d.target.Arch%10, nvErr, api.ErrUnsupported)
	}
	d.noNVRTC = nvErr
	return nil
}

// errNoDevice is the error of an ordinal past the device count.
var errNoDevice = fmt.Errorf("no such CUDA device: %w", api.ErrUnsupported)

// do runs fn on a locked OS thread with the context current, holding mu.
func (d *realDevice) do(fn func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.drv.SetCurrent(d.ctx); err != nil {
		return err
	}
	return fn()
}

func (d *realDevice) describe() string {
	if d.comp == nil {
		return fmt.Sprintf("%s (compute capability %d.%d, kernels as prebuilt PTX for %s, driver %d; no NVRTC: %v)",
			d.name, d.arch/10, d.arch%10, d.target, d.drv.Version, d.noNVRTC)
	}
	return fmt.Sprintf("%s (compute capability %d.%d, kernels as %s, driver %d, NVRTC %d.%d)",
		d.name, d.arch/10, d.arch%10, d.target, d.drv.Version, d.nvrtc.Major, d.nvrtc.Minor)
}

func (d *realDevice) memInfo() (free, total int64, err error) {
	err = d.do(func() error {
		f, t, err := d.drv.MemInfo()
		free, total = int64(f), int64(t)
		return err
	})
	return
}

func (d *realDevice) alloc(n int64) (p driver.DevicePtr, err error) {
	err = d.do(func() error {
		var err error
		p, err = d.drv.MemAlloc(uint64(n))
		return err
	})
	return
}

func (d *realDevice) free(p driver.DevicePtr) error {
	return d.do(func() error {
		// Work queued on the stream may still use p: cuMemFree waits for
		// the device only under the legacy default stream, so wait here.
		if err := d.drv.StreamSynchronize(d.stream); err != nil {
			return err
		}
		return d.drv.MemFree(p)
	})
}

func (d *realDevice) hostAlloc(n int) (s staging, err error) {
	err = d.do(func() error {
		h, err := d.drv.MemHostAlloc(n, driver.HostAllocPortable)
		s = staging{bytes: h.Bytes(), pinned: h}
		return err
	})
	return
}

func (d *realDevice) hostFree(s staging) error {
	return d.do(func() error { return d.drv.FreeHost(s.pinned) })
}

func (d *realDevice) copyHtoD(dst driver.DevicePtr, src staging, off, n int) error {
	return d.do(func() error { return d.drv.CopyHtoDAsync(dst, src.pinned, off, n, d.stream) })
}

func (d *realDevice) copyDtoH(dst staging, off, n int, src driver.DevicePtr) error {
	return d.do(func() error { return d.drv.CopyDtoHAsync(dst.pinned, off, n, src, d.stream) })
}

func (d *realDevice) copyDtoD(dst, src driver.DevicePtr, n int64) error {
	return d.do(func() error { return d.drv.CopyDtoDAsync(dst, src, uint64(n), d.stream) })
}

func (d *realDevice) fill32(dst driver.DevicePtr, v uint32, n int64) error {
	return d.do(func() error { return d.drv.FillD32Async(dst, v, uint64(n), d.stream) })
}

func (d *realDevice) sync() error {
	return d.do(func() error { return d.drv.StreamSynchronize(d.stream) })
}

// function returns a kernel, compiling and loading its source's module
// the first time; the caller holds mu with the context current.
func (d *realDevice) function(kernel string) (driver.Function, error) {
	if f, ok := d.funcs[kernel]; ok {
		return f, nil
	}
	_, file, ok := signatureOf(kernel)
	if !ok {
		return 0, fmt.Errorf("cuda: no kernel %q", kernel)
	}
	m, ok := d.modules[file]
	if !ok {
		var src kernels.Source
		for _, s := range kernels.Sources() {
			if s.Name == file {
				src = s
			}
		}
		var image []byte
		var err error
		if d.comp != nil {
			image, _, err = d.comp.Compile(src, d.target)
		} else {
			image, err = kernels.Prebuilt(src)
		}
		if err != nil {
			return 0, fmt.Errorf("cuda: compiling %s for %s: %w", file, d.target, err)
		}
		if m, err = d.drv.ModuleLoad(image); err != nil {
			return 0, fmt.Errorf("cuda: loading %s (%s): %w", file, d.target, err)
		}
		d.modules[file] = m
	}
	f, err := d.drv.Function(m, kernel)
	if err != nil {
		return 0, err
	}
	d.funcs[kernel] = f
	return f, nil
}

func (d *realDevice) launch(kernel string, g kernels.Geometry, args ...any) error {
	if err := checkLaunch(kernel, args); err != nil {
		return err
	}
	return d.do(func() error {
		f, err := d.function(kernel)
		if err != nil {
			return err
		}
		return d.drv.Launch(f, g.Grid, g.Block, g.Shared, d.stream, args...)
	})
}

func (d *realDevice) gemm(g gemmCall) error {
	return d.do(func() error {
		if g.math != d.math {
			if err := d.blas.SetMathMode(d.handle, g.math); err != nil {
				return err
			}
			d.math = g.math
		}
		if g.ab != driver.R32F {
			if g.batch == 1 {
				return d.blas.GemmEx(d.handle, g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.ab, g.beta, g.c, g.ldc)
			}
			return d.blas.GemmStridedBatchedEx(d.handle, g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.strideA,
				g.b, g.ldb, g.strideB, g.ab, g.beta, g.c, g.ldc, g.strideC, g.batch)
		}
		if g.batch == 1 {
			return d.blas.Sgemm(d.handle, g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
		}
		return d.blas.SgemmStridedBatched(d.handle, g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.strideA,
			g.b, g.ldb, g.strideB, g.beta, g.c, g.ldc, g.strideC, g.batch)
	})
}

func (d *realDevice) close() error {
	return d.do(func() error {
		err := d.drv.StreamSynchronize(d.stream)
		for _, m := range d.modules {
			_ = d.drv.ModuleUnload(m)
		}
		_ = d.blas.Destroy(d.handle)
		_ = d.drv.StreamDestroy(d.stream)
		if e := d.drv.ReleasePrimaryContext(d.dev); err == nil {
			err = e
		}
		return err
	})
}
