#!/usr/bin/env bash
# Data-parallel scaling of densessm-mpi on this machine (make bench-mpi):
# training tokens/s of the default model's shape (2.3M DenseMamba, batches
# of 8 x 256 tokens, AdamW) on 1 process with 1 and 2 backend threads, and
# on 2 MPI ranks of 1 thread each, and the all-reduce's share of the step
# time (DENSESSM_MPI_PROFILE=1 splits it into waiting and summing). Every
# run trains STEPS steps on the Go source of $(go env GOROOT)/src/net with
# the default model's tokenizer; tokens/s is taken over the steps after
# the third. Needs Open MPI's mpirun and the mpi build (see
# docs/distributed.md); about 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/densessm" ./cmd/densessm
go build -tags mpi -o "$work/densessm-mpi" ./cmd/densessm-mpi
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
cat >"$work/train.yaml" <<YAML
arch: densemamba
model: {model_type: densemamba, hidden_size: 192, num_hidden_layers: 6, state_size: 16, expand: 2, conv_kernel: 4, tie_word_embeddings: true}
tokenizer: $PWD/defaultmodel/model/tokenizer.json
data: [$(go env GOROOT)/src/net]
ext: [.go]
seq-len: 256
batch-size: 8
steps: $STEPS
lr: 0.003
warmup: 10
checkpoint-every: 0
eval-every: 0
eval-batches: 1
log-every: 1000
YAML
rate() { # tokens/s over the steps after the third, from metrics.jsonl
	python3 - "$1/metrics.jsonl" <<'PY'
import json, sys
rs = [r for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
a, b = rs[2], rs[-1]
print(f"{(b['tokens'] - a['tokens']) / (b['elapsed_s'] - a['elapsed_s']):.0f}")
PY
}
bench() { # name, command...
	local name=$1 out="$work/$1"
	shift
	"$@" --config "$work/train.yaml" --out "$out" >"$work/$name.log" 2>&1 || { cat "$work/$name.log"; exit 1; }
	printf '%-40s %6s tokens/s  %s\n' "$name" "$(rate "$out")" "$(grep -h '^all-reduce' "$work/$name.log" || true)"
}
bench "densessm, 1 process, 1 thread" "$work/densessm" train --threads 1
bench "densessm, 1 process, 2 threads" "$work/densessm" train --threads 2
bench "densessm-mpi, 2 ranks x 1 thread" mpirun -np 2 "$work/densessm-mpi" train --threads 1
DENSESSM_MPI_PROFILE=1 bench "same, profiled" mpirun -np 2 -x DENSESSM_MPI_PROFILE "$work/densessm-mpi" train --threads 1
DENSESSM_MPI_BLOCKING=1 bench "same, blocking MPI_Allreduce" mpirun -np 2 -x DENSESSM_MPI_BLOCKING "$work/densessm-mpi" train --threads 1
