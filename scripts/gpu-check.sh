#!/usr/bin/env bash
# scripts/gpu-check.sh: the CUDA backend's device check, one command on a
# machine with an NVIDIA GPU (docs/cuda.md, "The device check").
#
#   scripts/gpu-check.sh               run the check
#   scripts/gpu-check.sh --bundle DIR  build what it runs into DIR and stop
#                                      (make gpu-bundle: DIR=gpu-bundle)
#
# What it runs comes from Go alone (CGO_ENABLED=0): built here when `go` is
# on PATH, else taken from a bundle that `make gpu-bundle` built on another
# machine (GPU_BUNDLE, default gpu-bundle/: bundle.tar.xz, unpacked first).
# It needs the driver (libcuda.so.1), NVRTC and cuBLAS (a toolkit, or the
# nvidia-* wheels of $PYTHON's site-packages, which it points
# DENSESSM_NVRTC and DENSESSM_CUBLAS at when they are unset) and, for the
# PyTorch side, $PYTHON (default python3) with torch and transformers.
#
# Steps, each under its own time limit and all of them within
# GPU_CHECK_BUDGET seconds (default 470; a step that would start with less
# than 10 s left is skipped):
#   driver, kernels  their packages' tests (NVRTC compiles every source)
#   backend          the GPU's tests (names ending in Device: TestComplianceDevice,
#                    TestModelsDevice, TestParityDevice, ...), with
#                    DENSESSM_REQUIRE_GPU=1 (no GPU fails)
#   prebuilt         TestModelsDevice on the prebuilt PTX, as without NVRTC
#                    (DENSESSM_CUDA_PREBUILT=1)
#   plugin           the plugin's tests, on the prebuilt plugin
#   bench            the Go benchmarks: bandwidth ceiling, scan, retention,
#                    GEMM, decode (backends/cuda/bench_test.go)
#   ours-ARCH        densessm bench model --backend cuda (through the plugin)
#                    at mamba-130m's and DenseRetNet-350M's shapes
#   torch-kernels    torch.matmul and torch's copy (bench/torch_kernels.py)
#   torch-ARCH       the same models in PyTorch (bench/torch_models.py)
# It writes $OUT/gpu-check.md (steps, comparison table, device tests'
# lines, benchmarks), backend.log and bench.log beside it and every log in
# gpu-check-logs.tar.gz; 4 files. Exit status: 0 when every step passed,
# 1 when one failed, timed out or was skipped, 2 when it could not start.
#
# GPU_CHECK_FAKE=1 is the dry run for a machine without a GPU: the fake
# device (DENSESSM_CUDA_FAKE=1), tiny models, PyTorch on the CPU (PYTHON
# defaults to ~/.cache/densessm/pyref/bin/python when it exists), the GPU
# not required. Its numbers mean nothing; it tries the plumbing
# (scripts/gpu-check-dry-run.sh runs it and checks the report).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$PWD

# The bundle: name, package of each test binary (run in the package's
# folder, as go test does).
tests=(driver:backends/cuda/driver kernels:backends/cuda/kernels backend:backends/cuda plugin:cmd/densessm-backend-cuda)

# tree_hash prints a SHA-256 of the Go and CUDA sources and go.mod/go.sum
# of the working tree, to tell whether a bundle was built from it.
tree_hash() {
	local files
	if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
		files=$(git -C "$root" ls-files -co --exclude-standard)
	else
		files=$(cd "$root" && find . -path ./.git -prune -o -path ./gpu-bundle -prune -o -type f -print | sed 's|^\./||')
	fi
	(cd "$root" && grep -E '\.(go|cu|cuh)$|(^|/)go\.(mod|sum)$' <<<"$files" | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -d' ' -f1)
}

# build_bundle DIR builds the test binaries, densessm and the plugin (in
# DIR/plugins) into DIR, for linux/amd64 without cgo, and records the
# sources' hash in DIR/tree.sha256.
build_bundle() {
	local dir=$1 t name pkg
	mkdir -p "$dir/plugins" || return 1
	for t in "${tests[@]}"; do
		name=${t%%:*} pkg=${t#*:}
		echo "building $dir/$name.test"
		CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go test -c -trimpath -ldflags='-s -w' -o "$dir/$name.test" "./$pkg" || return 1
	done
	echo "building $dir/densessm and $dir/plugins/densessm-backend-cuda"
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w' -tags nodefaultmodel -o "$dir/densessm" ./cmd/densessm || return 1
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w' -o "$dir/plugins/densessm-backend-cuda" ./cmd/densessm-backend-cuda || return 1
	tree_hash >"$dir/tree.sha256"
}

if [ "${1:-}" = --bundle ]; then
	dest=${2:?usage: scripts/gpu-check.sh --bundle DIR}
	command -v go >/dev/null || { echo "gpu-check: --bundle needs go on PATH" >&2; exit 2; }
	command -v xz >/dev/null || { echo "gpu-check: --bundle needs xz" >&2; exit 2; }
	stage=$(mktemp -d) || exit 2
	trap 'rm -rf "$stage"' EXIT
	build_bundle "$stage" || { echo "gpu-check: building the bundle failed" >&2; exit 1; }
	rm -rf "$dest" && mkdir -p "$dest" || exit 2
	tar -C "$stage" -cf - . | xz -6 -T0 >"$dest/bundle.tar.xz" || exit 1
	cp "$stage/tree.sha256" "$dest/"
	bundle=$(du -b "$dest/bundle.tar.xz" | cut -f1)
	tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
	mib() { echo "$(($1 / 1048576)).$(($1 % 1048576 * 10 / 1048576)) MiB"; }
	echo "gpu-check: $dest/bundle.tar.xz: $(mib "$bundle") ($(mib "$(du -cb "$stage"/* "$stage"/plugins/* | tail -1 | cut -f1)") unpacked);" \
		"with the working tree ($(mib "$tree")): $(mib $((bundle + tree))) of the device's 64 MiB"
	if [ $((bundle + tree)) -ge $((64 * 1048576)) ]; then
		echo "gpu-check: over the 64 MiB a device run carries" >&2
		exit 1
	fi
	exit 0
fi

fake=${GPU_CHECK_FAKE:-0}
out=${OUT:-/tmp/gpu-check}
budget=${GPU_CHECK_BUDGET:-470}
work=$(mktemp -d) || exit 2
trap 'rm -rf "$work"' EXIT
logs=$work/logs
mkdir -p "$out" "$logs" || exit 2
export CGO_ENABLED=0 DENSESSM_REQUIRE_NVRTC=1
export DENSESSM_CUDA_CACHE=$work/kernel-cache XDG_CONFIG_HOME=$work/config
if [ "$fake" = 1 ]; then
	export DENSESSM_CUDA_FAKE=1 DENSESSM_REQUIRE_GPU=0
	pyref=$HOME/.cache/densessm/pyref/bin/python
	[ -x "$pyref" ] && PYTHON=${PYTHON:-$pyref}
else
	export DENSESSM_REQUIRE_GPU=1
fi
PYTHON=${PYTHON:-python3}
start_all=$SECONDS
status=0

# step NAME LIMIT DIR COMMAND...: runs the command in DIR with its output in
# $logs/NAME.log, under LIMIT seconds or what is left of the budget, and
# records the result in $logs/steps.tsv.
step() {
	local name=$1 limit=$2 dir=$3
	shift 3
	local left=$((budget - (SECONDS - start_all)))
	[ "$limit" -gt "$left" ] && limit=$left
	if [ "$limit" -lt 10 ]; then
		printf '%s\tSKIPPED (out of time)\t0\t%s\n' "$name" "$2" >>"$logs/steps.tsv"
		echo "$name: SKIPPED (the budget of ${budget}s is spent)"
		status=1
		return 1
	fi
	local start=$SECONDS rc result=pass
	(cd "$dir" && exec timeout -k 5 "$limit" "$@") >"$logs/$name.log" 2>&1
	rc=$?
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		result="TIMEOUT after ${limit}s"
	elif [ $rc -ne 0 ]; then
		result="FAIL (exit $rc; see $name.log)"
	fi
	[ "$result" = pass ] || status=1
	printf '%s\t%s\t%s\t%s\n' "$name" "$result" $((SECONDS - start)) "$limit" >>"$logs/steps.tsv"
	echo "$name: $result ($((SECONDS - start)) s)"
	[ "$result" = pass ]
}

# The binaries: built here with go, or a bundle's.
bundle=$work/bundle
bundle_from=${GPU_BUNDLE:-}
if [ -z "$bundle_from" ] && command -v go >/dev/null; then
	step build 240 "$root" bash -c "$(declare -p tests root); $(declare -f tree_hash build_bundle); build_bundle '$bundle'"
	binaries="built here with $(go version)"
else
	bundle_from=${bundle_from:-gpu-bundle}
	if [ -f "$bundle_from/bundle.tar.xz" ]; then
		mkdir -p "$bundle"
		if command -v xz >/dev/null; then
			step unpack 60 "$root" tar -C "$bundle" -xJf "$bundle_from/bundle.tar.xz"
		else
			step unpack 60 "$root" python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle_from/bundle.tar.xz" "$bundle"
		fi
	elif [ -x "$bundle_from/backend.test" ]; then
		bundle=$(cd "$bundle_from" && pwd)
	else
		echo "gpu-check: no go on PATH and no bundle in '$bundle_from' (make gpu-bundle on a machine with Go, carry gpu-bundle/, or set GPU_BUNDLE)" >&2
		exit 2
	fi
	binaries="bundle $bundle_from"
	if [ "$(cat "$bundle/tree.sha256" 2>/dev/null)" != "$(tree_hash)" ]; then
		binaries="$binaries, **built from other sources than this tree's** (rerun make gpu-bundle)"
	fi
fi

# NVRTC and cuBLAS from $PYTHON's NVIDIA wheels, unless set.
if [ -z "${DENSESSM_NVRTC:-}${DENSESSM_CUBLAS:-}" ]; then
	for sp in $("$PYTHON" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
		if compgen -G "$sp/nvidia/cu13/lib/libnvrtc.so*" >/dev/null || compgen -G "$sp/nvidia/cuda_nvrtc/lib/libnvrtc.so*" >/dev/null; then
			export DENSESSM_NVRTC=$sp
		fi
		if compgen -G "$sp/nvidia/cu13/lib/libcublas.so*" >/dev/null || compgen -G "$sp/nvidia/cublas/lib/libcublas.so*" >/dev/null; then
			export DENSESSM_CUBLAS=$sp
		fi
	done
fi

{
	echo "mode: $([ "$fake" = 1 ] && echo '**dry run on the fake device (GPU_CHECK_FAKE=1): the numbers mean nothing**' || echo GPU)"
	echo "date: $(date -u +%FT%TZ), host $(uname -n), $(nproc) cores"
	echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
	echo "binaries: $binaries"
	echo "NVRTC: ${DENSESSM_NVRTC:-found by the loader}; cuBLAS: ${DENSESSM_CUBLAS:-found by the loader}"
	echo "python: $PYTHON"
} >"$logs/info.txt"

if [ "$fake" = 1 ]; then
	device=cpu
	tiny() { # tiny ARCH: bench/configs' config of ARCH with tiny sizes, in $work
		"$PYTHON" - "$1" "$work/$1.json" <<-'EOF'
			import json, sys
			arch, dest = sys.argv[1:]
			src = {"mamba": "bench/configs/mamba-130m.json", "denseretnet": "bench/configs/denseretnet-350m.json"}[arch]
			cfg = json.load(open(src))
			cfg.update({"mamba": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, intermediate_size=128, time_step_rank=4, state_size=8),
			            "denseretnet": dict(vocab_size=512, hidden_size=64, num_hidden_layers=3, query_key_dim=32, value_dim=128)}[arch])
			json.dump(cfg, open(dest, "w"))
		EOF
		echo "$work/$1.json"
	}
	configs=("mamba:$(tiny mamba)" "denseretnet:$(tiny denseretnet)")
	model_args=(--prefill 32 --decode 8 --reps 1 --train-step --train-batch 2 --train-seq 16)
	bench_args=(-test.benchtime 2x)
	kernel_args=(--sizes "32,64" --copy-bytes 65536 --seconds 0.05)
else
	device=cuda
	configs=("mamba:$root/bench/configs/mamba-130m.json" "denseretnet:$root/bench/configs/denseretnet-350m.json")
	model_args=(--prefill 512 --decode 64 --reps 3 --train-step --train-batch 8 --train-seq 128)
	bench_args=(-test.benchtime 0.5s)
	kernel_args=(--sizes "256,1024,2048,4096")
fi

step driver 45 "$root/backends/cuda/driver" "$bundle/driver.test" -test.count=1 -test.v
step kernels 60 "$root/backends/cuda/kernels" "$bundle/kernels.test" -test.count=1 -test.v
step backend 150 "$root/backends/cuda" "$bundle/backend.test" -test.count=1 -test.v -test.run 'Device$'
step prebuilt 60 "$root/backends/cuda" env DENSESSM_CUDA_PREBUILT=1 "$bundle/backend.test" -test.count=1 -test.v -test.run 'TestModelsDevice'
step plugin 60 "$root/cmd/densessm-backend-cuda" env DENSESSM_CUDA_PLUGIN="$bundle/plugins/densessm-backend-cuda" \
	"$bundle/plugin.test" -test.count=1 -test.v
step bench 120 "$root/backends/cuda" "$bundle/backend.test" -test.run '^$' -test.bench . "${bench_args[@]}"
for c in "${configs[@]}"; do
	step "ours-${c%%:*}" 75 "$root" env DENSESSM_PLUGIN_PATH="$bundle/plugins" \
		"$bundle/densessm" bench model --backend cuda --threads 0 --arch "${c%%:*}" --config "${c#*:}" "${model_args[@]}"
done
step torch-kernels 60 "$root" "$PYTHON" bench/torch_kernels.py --device "$device" "${kernel_args[@]}"
for c in "${configs[@]}"; do
	step "torch-${c%%:*}" 90 "$root" env PYTHONUNBUFFERED=1 \
		"$PYTHON" bench/torch_models.py --device "$device" --threads "$(nproc)" --arch "${c%%:*}" --config "${c#*:}" "${model_args[@]}"
done

echo "total: $((SECONDS - start_all)) s of the budget's $budget" >>"$logs/info.txt"
python3 scripts/gpu_check_table.py "$logs" >"$out/gpu-check.md" || status=1
cp "$logs/backend.log" "$logs/bench.log" "$out/" 2>/dev/null
tar -C "$logs" -czf "$out/gpu-check-logs.tar.gz" . || status=1
cat "$out/gpu-check.md"
echo "gpu-check: report in $out/gpu-check.md; exit status $status"
exit $status
