#!/usr/bin/env bash
# scripts/gpu-check-dry-run.sh: try scripts/gpu-check.sh end to end without
# a GPU before a session spends its device time on it (not part of make
# test: the PyTorch side takes torch; ~/.cache/densessm/pyref's is used when
# it exists, see make pyref).
#
# It runs the check in its dry-run mode (GPU_CHECK_FAKE=1: the fake device,
# tiny models, PyTorch on the CPU) on the bundle of `make gpu-bundle` when
# gpu-bundle/bundle.tar.xz exists (GPU_BUNDLE overrides), else building with
# go, and checks the report: every step ran and passed within its limit,
# every row of the comparison table has its numbers, the files a device run
# brings back are there. Then it takes numbers away from the logs and checks
# that the table shows them as missing instead of making them up.
# OUT (default: a temporary folder) keeps the dry run's report.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
out=${OUT:-$(mktemp -d)}
mkdir -p "$out" || exit 2
if [ -z "${GPU_BUNDLE:-}" ] && [ -f gpu-bundle/bundle.tar.xz ]; then
	export GPU_BUNDLE=gpu-bundle
fi
binaries="built with go"
[ -n "${GPU_BUNDLE:-}" ] && binaries="bundle $GPU_BUNDLE"
failures=0
fail() {
	echo "dry run: FAIL: $*" >&2
	failures=$((failures + 1))
}

echo "dry run: GPU_CHECK_FAKE=1 scripts/gpu-check.sh ($binaries), report in $out"
GPU_CHECK_FAKE=1 OUT=$out scripts/gpu-check.sh >"$out/dry-run.log" 2>&1
rc=$?
report=$out/gpu-check.md
[ $rc -eq 0 ] || fail "gpu-check.sh exited with $rc (see $out/dry-run.log and the steps below)"
for f in gpu-check.md backend.log bench.log gpu-check-logs.tar.gz; do
	[ -s "$out/$f" ] || fail "$out/$f is missing or empty"
done
if [ ! -s "$report" ]; then
	echo "dry run: no report to check; the check's output:" >&2
	cat "$out/dry-run.log" >&2
	exit 1
fi
[ "$(find "$out" -maxdepth 1 -type f ! -name dry-run.log | wc -l)" -le 8 ] || fail "more than the 8 files a device run brings back"
for s in driver kernels backend plugin bench ours-mamba ours-denseretnet torch-kernels torch-mamba torch-denseretnet; do
	line=$(grep -E "^\| $s \|" "$report")
	if [ -z "$line" ]; then
		fail "step $s has no row in the report"
	elif ! grep -q "^| $s | pass |" <<<"$line"; then
		fail "step $s: $line"
	fi
done
for want in 'GEMM 32×32×32' 'GEMM 64×64×64' 'device copy' 'selective scan B=' 'selective scan grad B=' \
	'retention recurrent/' 'retention chunkwise/' 'retention parallel/' 'retention grad chunkwise/' 'retention grad parallel/' \
	'mamba-130m .* prefill' 'mamba-130m .* decode' 'mamba-130m .* train step' \
	'DenseRetNet-350M .* prefill' 'DenseRetNet-350M .* decode' 'DenseRetNet-350M .* train step'; do
	line=$(grep -E "^\| $want" "$report")
	if [ -z "$line" ]; then
		fail "no comparison row for '$want'"
	elif grep -q missing <<<"$line"; then
		fail "a number is missing: $line"
	fi
done

# The table from logs with numbers taken away.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
tar -C "$logs" -xzf "$out/gpu-check-logs.tar.gz" || fail "cannot unpack gpu-check-logs.tar.gz"
rm -f "$logs/ours-mamba.log"
sed -i '/^BenchmarkGEMM\/n=64/d; /^BenchmarkBandwidth/d' "$logs/bench.log"
python3 scripts/gpu_check_table.py "$logs" >"$logs/partial.md" || fail "gpu_check_table.py failed on partial logs"
check_row() { # check_row ROW PATTERN: the row starting with the regex ROW matches the regex PATTERN
	grep -E "^\| $1" "$logs/partial.md" | grep -qE "$2" || fail "partial logs: row '$1' does not match /$2/: $(grep -E "^\| $1" "$logs/partial.md")"
}
check_row 'GEMM 64×64×64' '\| missing \| [0-9.e+-]+ \| missing \| ≥ 0.9 \| — \|$'
check_row 'GEMM 32×32×32' '\| [0-9.e+-]+ \| [0-9.e+-]+ \| [0-9.e+-]+ \| ≥ 0.9 \|'
check_row 'device copy' '\| missing \| [0-9.e+-]+ \| missing \|'
check_row 'selective scan B=' '\| [0-9.e+-]+ \| missing \| missing \| ≥ 0.5 \| — \|$'
check_row 'mamba-130m .* decode' '\| missing \| [0-9.e+-]+ \| missing \| ≥ 2 \| — \|$'
check_row 'DenseRetNet-350M .* decode' '\| [0-9.e+-]+ \| [0-9.e+-]+ \| [0-9.e+-]+ \| ≥ 2 \|'

if [ $failures -ne 0 ]; then
	echo "dry run: $failures check(s) failed; report: $report" >&2
	exit 1
fi
echo "dry run: pass ($(grep -E '^- total:' "$report" | sed 's/^- //')); report: $report"
