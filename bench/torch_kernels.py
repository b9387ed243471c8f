"""PyTorch side of scripts/gpu-check.sh's GEMM and bandwidth rows.

Prints one JSON line: torch.matmul's TFLOP/s on square float32 matrices of
random values, x @ w.T as the densessm backends' BenchmarkGEMM multiplies
(TF32 off: float32 arithmetic, as the CUDA backend's cuBLAS calls), and a
device-to-device copy's GB/s (bytes read and written, as BenchmarkBandwidth
counts them), on --device (cuda on the GPU machine; cpu for a dry run).

Each rate is the mean over back-to-back calls filling at least --seconds
after one warm-up call, between two torch.cuda.synchronize() calls:
  {"framework": "torch 2.11.0+cu130", "device": "NVIDIA H100 80GB HBM3",
   "gemm": [{"n": 256, "tflops": ...}, ...],
   "copy": {"bytes": 536870912, "gbps": ...}}

Usage: python3 bench/torch_kernels.py --device cuda --sizes 256,1024,2048,4096
"""

import argparse
import json
import time

import torch


def rate(fn, amount, seconds, sync):
    """amount per second over calls of fn filling at least seconds, after a warm-up call."""
    fn()
    sync()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        if calls & (calls - 1) == 0:  # check the clock at powers of two calls
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return amount * calls / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    ap.add_argument("--sizes", default="256,1024,2048,4096", help="GEMM sizes n (n x n x n), comma-separated")
    ap.add_argument("--copy-bytes", type=int, default=1 << 29, help="bytes of the copied buffer (512 MiB)")
    ap.add_argument("--seconds", type=float, default=0.5, help="timed seconds per rate, at least")
    args = ap.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rep = {"framework": f"torch {torch.__version__}", "device": "cpu", "gemm": [], "copy": None}
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        rep["device"] = torch.cuda.get_device_name(device)
    gen = torch.Generator().manual_seed(1)
    for n in (int(s) for s in args.sizes.split(",")):
        x = (torch.rand(n, n, generator=gen) * 2 - 1).to(device)
        w = (torch.rand(n, n, generator=gen) * 2 - 1).to(device)
        y = torch.empty(n, n, device=device)
        tflops = rate(lambda: torch.matmul(x, w.T, out=y), 2 * n ** 3 / 1e12, args.seconds, sync)
        rep["gemm"].append({"n": n, "tflops": tflops})
        del x, w, y
    src = torch.ones(args.copy_bytes // 4, device=device)
    dst = torch.empty_like(src)
    rep["copy"] = {"bytes": args.copy_bytes,
                   "gbps": rate(lambda: dst.copy_(src), 2 * args.copy_bytes / 1e9, args.seconds, sync)}
    print(json.dumps(rep))


if __name__ == "__main__":
    main()
