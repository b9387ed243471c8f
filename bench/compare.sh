#!/usr/bin/env bash
# compare.sh: measure densessm side by side with OpenBLAS, PyTorch and
# llama.cpp on this CPU (issues 6 and 15) and print tables of ratios. See
# bench/compare.py for what is measured; the run takes about 7 minutes on 2
# cores without llama.cpp, and took 37 with it on a 2-core Zen 3 that another
# benchmark shared.
#
#   bench/compare.sh [--threads 1,2] [--json-out results.jsonl] [--quick]
#                    [--parts gemm,models,train,llamacpp] [--no-llamacpp]
#                    [--pp4096] [--llama-bench-args '--repack 0']
#                    [--dtypes f32,bf16,q8] [--model-rounds N] [--llama-reps N]
#
# llama.cpp: bench/llamacpp.sh builds llama-bench from the pinned
# llama-cpp-python sdist and converts the random mamba-130m (and the
# mamba-10m of --quick) to GGUF, once, in ~/.cache/densessm/llamacpp
# (LLAMACPP_DIR); the first run downloads 77 MB and builds for about 6
# minutes. --no-llamacpp (or --parts without llamacpp) skips it; when it
# fails, the llama.cpp rows are skipped with its message.
#
# Needs: Go, gcc, Debian's OpenBLAS (apt-get install -y libopenblas-dev; the
# OpenBLAS part is skipped with a message when it is missing), and a Python
# with torch and transformers: PYTHON, by default $PYREF/bin/python with PYREF
# defaulting to ~/.cache/densessm/pyref, the environment that `make pyref`
# builds (`make bench-compare` builds it first unless PYTHON is set).
# OPENBLAS_CORETYPE is set from the CPU's flags unless it is already set:
# SkylakeX with AVX-512, Zen on an AMD CPU with AVX2, Haswell on other AVX2
# CPUs. SkylakeX dies with an illegal instruction on a CPU without AVX-512
# (AMD Zen 3), and an empty OPENBLAS_CORETYPE makes Debian's OpenBLAS 0.3.21
# fall back to Haswell; the table's header says which core OpenBLAS used and
# which it picks on its own.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-${PYREF:-$HOME/.cache/densessm/pyref}/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

detect_coretype() {
	local flags vendor
	flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
	vendor=$(grep -m1 '^vendor_id' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
	if [[ $flags == *" avx512f "* ]]; then
		echo SkylakeX
	elif [[ $flags == *" avx2 "* && $flags == *" fma "* ]]; then
		if [[ $vendor == AuthenticAMD ]]; then echo Zen; else echo Haswell; fi
	fi
}

if [[ ! -x $python ]] || ! "$python" -c 'import torch, transformers' 2>/dev/null; then
	echo "compare.sh: $python cannot import torch and transformers; run make pyref, or set PYTHON to a Python that can" >&2
	exit 1
fi
command -v gcc >/dev/null || { echo "compare.sh: gcc is missing (apt-get install -y gcc)" >&2; exit 1; }

echo "building densessm, membw and sgemm_openblas in $work" >&2
(cd "$root" && go build -o "$work/densessm" ./cmd/densessm)
gcc -O3 -march=native -pthread -o "$work/membw" "$root/bench/membw.c"
sgemm=""
if gcc -O2 -o "$work/sgemm_openblas" "$root/bench/sgemm_openblas.c" -lopenblas 2>"$work/gcc.log"; then
	sgemm=$work/sgemm_openblas
else
	echo "compare.sh: OpenBLAS is missing, so the SGEMM comparison is skipped;" \
		"install it with: apt-get install -y libopenblas-dev" >&2
	sed 's/^/  /' "$work/gcc.log" >&2
fi

# llama.cpp, unless --no-llamacpp or a --parts without it says otherwise.
want_llamacpp=1
args=()
prev=""
for a in "$@"; do
	case $a in
	--no-llamacpp) want_llamacpp=0; continue ;;
	--parts=*) [[ ${a#--parts=} == *llamacpp* ]] || want_llamacpp=0 ;;
	*) [[ $prev == --parts && $a != *llamacpp* ]] && want_llamacpp=0 ;;
	esac
	args+=("$a")
	prev=$a
done
llamacpp=""
llamacpp_skipped=""
if [[ $want_llamacpp == 1 ]]; then
	if out=$(PYTHON="$python" bash "$root/bench/llamacpp.sh" "$root/bench/configs/mamba-130m.json" \
		"$root/bench/configs/mamba-10m.json"); then
		llamacpp=$(tail -n 1 <<<"$out")
	else
		llamacpp_skipped="bench/llamacpp.sh failed; its message is above"
		echo "compare.sh: $llamacpp_skipped, so the llama.cpp rows are skipped" >&2
	fi
else
	llamacpp_skipped="--no-llamacpp or --parts"
fi

coretype=${OPENBLAS_CORETYPE:-$(detect_coretype)}
echo "OPENBLAS_CORETYPE=${coretype:-unset (OpenBLAS detects)}" >&2
"$python" "$root/bench/compare.py" --densessm "$work/densessm" --sgemm "$sgemm" --membw "$work/membw" \
	--python "$python" --coretype "$coretype" --llamacpp "$llamacpp" --llamacpp-skipped "$llamacpp_skipped" \
	${args[@]+"${args[@]}"}
