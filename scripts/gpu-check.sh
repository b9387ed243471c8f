#!/usr/bin/env bash
# scripts/gpu-check.sh: the CUDA backend's device check, one command on a
# machine with an NVIDIA GPU and Go (nothing else is built or downloaded;
# CGO_ENABLED=0). It needs the driver (libcuda.so.1) and NVRTC and cuBLAS
# (a CUDA toolkit, or the nvidia-* pip wheels: see docs/cuda.md for where
# they are looked for, DENSESSM_NVRTC and DENSESSM_CUBLAS to point at them).
#
# Steps, each under its own time limit (7.5 minutes in all at most):
#   1. the driver and kernels packages' tests (NVRTC compiling every source)
#   2. the backend's tests with the GPU required (DENSESSM_REQUIRE_GPU=1):
#      the compliance suite on the device, every built-in architecture
#      against the CPU backend, and the fake-device tests
#   3. the plugin's tests (the fake device through plugins/host)
#   4. benchmarks, GPU and CPU side by side: GEMM (GFLOP/s) and a decode
#      step of a mid-sized Mamba and RetNet (tokens/s)
# and writes a Markdown table of the results to $OUT/gpu-check.md (or
# ./gpu-check.md without $OUT) and stdout, with each step's log beside it.
# The exit status is 1 when a step failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-.}
mkdir -p "$out"
export CGO_ENABLED=0 DENSESSM_REQUIRE_GPU=1 DENSESSM_REQUIRE_NVRTC=1
export DENSESSM_CUDA_CACHE=${DENSESSM_CUDA_CACHE:-$(mktemp -d)}
table="$out/gpu-check.md"
status=0

{
	echo "# CUDA backend device check"
	echo
	echo "- date: $(date -u +%FT%TZ)"
	echo "- go: $(go version)"
	echo "- gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
	echo
	echo "| step | result | seconds |"
	echo "| --- | --- | --- |"
} >"$table"

# step NAME LIMIT_SECONDS COMMAND...: runs the command with its output in
# $out/NAME.log and adds a row to the table.
step() {
	local name=$1 limit=$2
	shift 2
	local start=$SECONDS
	timeout "$limit" "$@" >"$out/$name.log" 2>&1
	local rc=$?
	local result=pass
	if [ $rc -eq 124 ]; then
		result="TIMEOUT after ${limit}s"
		status=1
	elif [ $rc -ne 0 ]; then
		result="FAIL (exit $rc; see $name.log)"
		status=1
	fi
	echo "| $name | $result | $((SECONDS - start)) |" >>"$table"
	echo "$name: $result ($((SECONDS - start)) s)"
}

step build 60 go build ./backends/cuda/... ./cmd/densessm-backend-cuda
step driver-kernels 60 go test -count=1 ./backends/cuda/driver/ ./backends/cuda/kernels/
step backend 150 go test -count=1 -v ./backends/cuda/
step plugin 60 go test -count=1 ./cmd/densessm-backend-cuda/
step bench 120 go test -count=1 -run '^$' -bench 'GEMM|Decode' -benchtime 1s ./backends/cuda/

{
	echo
	echo "## Device tests"
	echo
	echo '```'
	grep -E '^(--- |    --- )(PASS|FAIL|SKIP): Test(Compliance|Models)Device|device: |host fallback: |no usable GPU'  "$out/backend.log" | head -40
	grep -E '^(--- FAIL|FAIL|panic)' "$out/backend.log" | head -40
	echo '```'
	echo
	echo "## Benchmarks"
	echo
	echo "| benchmark | ns/op | rate |"
	echo "| --- | --- | --- |"
	awk '/^Benchmark/ { rate = ""; for (i = 4; i <= NF; i++) if ($i ~ /GFLOP\/s|tok\/s/) rate = $(i-1) " " $i; print "| " $1 " | " $3 " | " rate " |" }' "$out/bench.log"
} >>"$table"

cat "$table"
exit $status
