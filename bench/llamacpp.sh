#!/usr/bin/env bash
# llamacpp.sh: build llama.cpp's llama-bench from a pinned source and convert
# bench/compare.py's random Hugging Face Mamba models to GGUF, for the
# llama.cpp rows of bench/compare.sh (issue 15). Idempotent: what exists for
# the pinned version is kept.
#
#   bench/llamacpp.sh [CONFIG.json ...]
#
# 1. Downloads the sdist of llama-cpp-python $LLAMACPP_PY_VERSION from PyPI
#    (`pip download --no-binary :all: --no-deps`; its vendor/llama.cpp is the
#    llama.cpp tree), checks its sha256 and unpacks it into
#    $LLAMACPP_DIR/$LLAMACPP_PY_VERSION/src.
# 2. Builds llama-bench there with cmake in Release, for this CPU
#    (GGML_NATIVE), without the server, curl or OpenSSL. cmake is installed
#    with apt-get when it is missing.
# 3. For each CONFIG (default bench/configs/mamba-130m.json): saves the
#    random model bench/torch_models.py builds from it (config.json and
#    model.safetensors, torch.manual_seed(1)) and converts it with llama.cpp's
#    convert_hf_to_gguf.py to f32, bf16 and q8_0 GGUF files:
#    $LLAMACPP_DIR/$LLAMACPP_PY_VERSION/models/NAME-{f32,bf16,q8_0}.gguf
#    (NAME: the config's file name without .json). No tokenizer files are
#    written: convert_hf_to_gguf.py then takes the GPT-NeoX vocabulary that
#    llama.cpp ships (models/ggml-vocab-gpt-neox.gguf), as it does for any
#    Mamba checkpoint without one. The converter runs with PYTHON (torch,
#    transformers, numpy, pyyaml, requests and tqdm, all pinned in
#    scripts/requirements-pyref.txt) and imports gguf from the tree's own
#    gguf-py, as it does by default: PyPI's gguf 0.19.0, the newest there,
#    is older than this converter (it lacks gguf.LazyChunkedTensor), so the
#    pinned sdist pins gguf too.
# The last line of stdout is a JSON object naming llama-bench, the model
# directory and the versions, for bench/compare.py.
#
# Environment: LLAMACPP_DIR (default ~/.cache/densessm/llamacpp),
# PYTHON (default $PYREF/bin/python, PYREF default ~/.cache/densessm/pyref,
# the venv `make pyref` builds), LLAMACPP_JOBS (build jobs, default nproc).
# Time on a 2-core Zen 3: a 77 MB download and the build, 6.5 minutes
# together; the conversion of mamba-130m and mamba-10m, under 1.5 minutes.
set -euo pipefail

# The pinned source: llama-cpp-python's sdist, whose vendor/llama.cpp is
# llama.cpp at commit 0c1e570 (2026-10-01).
LLAMACPP_PY_VERSION=0.3.36
LLAMACPP_PY_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-${PYREF:-$HOME/.cache/densessm/pyref}/bin/python}
base=${LLAMACPP_DIR:-$HOME/.cache/densessm/llamacpp}/$LLAMACPP_PY_VERSION
src=$base/src/llama_cpp_python-$LLAMACPP_PY_VERSION/vendor/llama.cpp
build=$base/build
models=$base/models
jobs=${LLAMACPP_JOBS:-$(nproc)}
cmake_flags=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF
	-DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
	-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TOOLS=ON -DGGML_CCACHE=OFF)

say() { echo "llamacpp.sh: $*" >&2; }
die() { say "$*"; exit 1; }

if [[ ! -x $python ]]; then
	die "$python is missing; run make pyref, or set PYTHON to a Python with torch and transformers"
fi

fetch_source() {
	[[ -f $src/CMakeLists.txt && -f $base/src/.densessm-unpacked ]] && return
	local dl=$base/download sdist
	sdist=$dl/llama_cpp_python-$LLAMACPP_PY_VERSION.tar.gz
	mkdir -p "$dl"
	if [[ ! -f $sdist ]] || ! echo "$LLAMACPP_PY_SHA256  $sdist" | sha256sum -c --status; then
		say "downloading the sdist of llama-cpp-python==$LLAMACPP_PY_VERSION from PyPI into $dl"
		rm -f "$sdist"
		"$python" -m pip download --disable-pip-version-check -q --no-binary :all: --no-deps \
			-d "$dl" "llama-cpp-python==$LLAMACPP_PY_VERSION"
	fi
	echo "$LLAMACPP_PY_SHA256  $sdist" | sha256sum -c --status ||
		die "$sdist: sha256 is not $LLAMACPP_PY_SHA256"
	rm -rf "$base/src"
	mkdir -p "$base/src"
	tar -xzf "$sdist" -C "$base/src"
	[[ -f $src/CMakeLists.txt ]] || die "$sdist has no vendor/llama.cpp"
	touch "$base/src/.densessm-unpacked"
}

build_bench() {
	local stamp=$build/.densessm-built want
	want="llama-cpp-python $LLAMACPP_PY_VERSION; ${cmake_flags[*]}"
	if [[ -x $build/bin/llama-bench && -f $stamp && $(cat "$stamp") == "$want" ]]; then
		return
	fi
	if ! command -v cmake >/dev/null; then
		say "cmake is missing: installing Debian's cmake with apt-get (apt-get update && apt-get install -y cmake)"
		if [[ $(id -u) == 0 ]]; then
			apt-get update -qq && apt-get install -y -qq cmake >&2
		else
			sudo apt-get update -qq && sudo apt-get install -y -qq cmake >&2
		fi
	fi
	command -v g++ >/dev/null || die "g++ is missing (apt-get install -y g++)"
	say "building llama-bench (llama.cpp of llama-cpp-python $LLAMACPP_PY_VERSION, Release, -march=native) in $build with $jobs jobs; a few minutes"
	rm -f "$stamp"
	cmake -S "$src" -B "$build" "${cmake_flags[@]}" >"$base/cmake-configure.log" 2>&1 ||
		{ tail -30 "$base/cmake-configure.log" >&2; die "cmake configure failed; see $base/cmake-configure.log"; }
	cmake --build "$build" --target llama-bench -j "$jobs" >"$base/cmake-build.log" 2>&1 ||
		{ tail -30 "$base/cmake-build.log" >&2; die "the build failed; see $base/cmake-build.log"; }
	echo "$want" >"$stamp"
}

check_python() {
	"$python" -c 'import numpy, requests, safetensors, torch, tqdm, transformers, yaml' 2>/dev/null ||
		die "$python cannot import what convert_hf_to_gguf.py needs (numpy, requests, safetensors, torch, tqdm, transformers, yaml); run make pyref"
}

# convert CONFIG: NAME-{f32,bf16,q8_0}.gguf in $models, remade when the
# config, torch_models.py or the pinned version change.
convert() {
	local cfg=$1 name key hf out type
	name=$(basename "$cfg" .json)
	key=$( (cat "$cfg" "$root/bench/torch_models.py"; echo "$LLAMACPP_PY_VERSION") | sha256sum | cut -c1-16)
	mkdir -p "$models"
	local done=1
	for type in f32 bf16 q8_0; do
		[[ -f $models/$name-$type.gguf && $(cat "$models/$name-$type.gguf.key" 2>/dev/null) == "$key" ]] || done=0
	done
	[[ $done == 1 ]] && return
	hf=$models/$name-hf
	say "saving the random $name model of bench/torch_models.py into $hf"
	rm -rf "$hf"
	"$python" "$root/bench/torch_models.py" --arch mamba --config "$cfg" --prefill 0 --decode 0 \
		--save "$hf" >"$models/$name-save.log" 2>&1 ||
		{ tail -20 "$models/$name-save.log" >&2; die "bench/torch_models.py --save failed; see $models/$name-save.log"; }
	for type in f32 bf16 q8_0; do
		out=$models/$name-$type.gguf
		say "converting $name to $out"
		rm -f "$out" "$out.key"
		# Without NO_LOCAL_GGUF the converter imports the tree's gguf-py.
		env -u NO_LOCAL_GGUF "$python" "$src/convert_hf_to_gguf.py" --outtype "$type" --outfile "$out.tmp" "$hf" \
			>"$models/$name-$type.log" 2>&1 ||
			{ tail -20 "$models/$name-$type.log" >&2; die "convert_hf_to_gguf.py --outtype $type failed; see $models/$name-$type.log"; }
		mv "$out.tmp" "$out"
		echo "$key" >"$out.key"
	done
	rm -rf "$hf"
}

fetch_source
build_bench
check_python
configs=("$@")
[[ ${#configs[@]} -gt 0 ]] || configs=("$root/bench/configs/mamba-130m.json")
for cfg in "${configs[@]}"; do
	[[ -f $cfg ]] || die "$cfg: no such config"
	convert "$cfg"
done
gguf_version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$src/gguf-py/pyproject.toml" | head -n 1), the tree's gguf-py"
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo 0c1e570)
say "llama-bench: $build/bin/llama-bench; models: $models"
printf '{"llama_bench":"%s","models":"%s","llama_cpp_python":"%s","llama_cpp_commit":"%s","gguf":"%s"}\n' \
	"$build/bin/llama-bench" "$models" "$LLAMACPP_PY_VERSION" "$commit" "$gguf_version"
