# densessm: build, test, and the long checks that are not part of `make test`.
GO ?= go
# PYREF: the virtual environment that `make pyref` builds for scripts/*.py and
# bench/*.py from scripts/requirements-pyref.txt (torch, transformers,
# torchscale, tokenizers, safetensors, numpy, tiktoken, datasets, pyarrow;
# exact pins). It lives
# outside the repository: it is ~6 GB (PyPI's torch brings the CUDA runtime),
# per user and writable without root, and survives `git clean`; nothing in
# the work tree copies or scans it. Remove the directory to start afresh.
PYREF ?= $(HOME)/.cache/densessm/pyref
# PYREF_BASE: the Python the venv is made from (the scripts are tested with 3.11).
PYREF_BASE ?= python3.11
# PYREF_PIP_FLAGS: extra pip install options, e.g. a CPU-only torch index
# (see scripts/requirements-pyref.txt).
PYREF_PIP_FLAGS ?=
# A copy of the requirements that were installed: pyref does nothing while it
# matches scripts/requirements-pyref.txt.
PYREF_STAMP = $(PYREF)/.densessm-requirements.txt
# PYTHON: the interpreter of every target that runs a script. Given on the
# command line or in the environment, it is used as it is (it needs the
# packages of scripts/requirements-pyref.txt); otherwise it is PYREF's, and
# those targets run `make pyref` first.
ifeq ($(origin PYTHON),undefined)
PYTHON = $(PYREF)/bin/python
PYREF_DEP = pyref
endif
FUZZTIME ?= 5m
# PYVENV: the virtual environment `make python-test` and `make wheel` build
# the Python package (pybind/) into, from pybind/requirements-dev.txt (exact
# pins; ~150 MB). Outside the repository, like PYREF; remove it to start
# afresh. PYVENV_BASE is the Python it is made from.
PYVENV ?= $(HOME)/.cache/densessm/pyvenv
PYVENV_BASE ?= python3
PYVENV_STAMP = $(PYVENV)/.densessm-requirements.txt
# NVRTC_VENV: the virtual environment where `make cuda-test` installs the
# nvidia-cuda-nvrtc wheel (NVRTC_VERSION, an exact pin; libnvrtc for compiling
# the CUDA kernels without a GPU or toolkit: a 58 MB download, 142 MB on disk),
# outside the repository; remove it to start afresh.
NVRTC_VERSION ?= 13.5.37
NVRTC_VENV ?= $(HOME)/.cache/densessm/nvrtc-$(NVRTC_VERSION)
# PTX_NVRTC_VENV: where `make cuda-ptx` installs the older NVRTC it builds the prebuilt PTX with
# (PTX_NVRTC_VERSION of nvidia-cuda-nvrtc-cu12, a 25 MB download): its PTX ISA 8.4 loads on any driver
# of CUDA 12.4 or newer (R550+), where NVRTC 13.5's PTX ISA 9.5 would need the newest drivers.
PTX_NVRTC_VERSION ?= 12.4.127
PTX_NVRTC_VENV ?= $(HOME)/.cache/densessm/nvrtc-cu12-$(PTX_NVRTC_VERSION)
# NCCL_VENV: where `make nccl-test` installs the nvidia-nccl-cu13 wheel
# (NCCL_VERSION; a 207 MB download, 231 MB on disk: not part of `make test`).
NCCL_VERSION ?= 2.32.6
NCCL_VENV ?= $(HOME)/.cache/densessm/nccl-$(NCCL_VERSION)

.PHONY: test fmt-check vet unit race purego mpi-test cuda-test nccl-test mpi bench-mpi python-test python-install pyvenv wheel bench-python proto build bench fuzz fixtures mamba-fixtures retnet-fixtures experiment experiment-quick tokenizer-fixtures data-fixtures tokenizer-bench tokenize-bench-cli bench-models bench-compare llamacpp pyref default-model bench-train gpu-bundle cuda-ptx

## test: everything CI runs (format check, vet, unit tests, the race detector on the packages
## that run goroutines, the CPU backend without assembly, data-parallel training over MPI, the CUDA
## backend's tests that need no GPU, and the Python package's tests)
test: fmt-check vet unit race purego mpi-test cuda-test python-test

fmt-check:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi

vet:
	$(GO) vet ./...
	cd plugins/examples/hgrn && $(GO) vet ./...

## unit: the module's tests, and those of the example plugin (a module of its own)
unit:
	$(GO) test ./...
	cd plugins/examples/hgrn && $(GO) test ./...

## race: the packages with goroutines (worker pool, tokenizer and data pipelines, parallel
## log-softmax, the trainer's checkpoints) under the race detector, their short tests
race:
	$(GO) test -race -short ./backends/cpu ./tokenizer ./data ./eval ./generate ./train ./internal/atomicfile ./distributed
	$(GO) test -race ./plugins/host ./plugins/sdk ./pybind

## proto: regenerate the plugin protocol's Go code (needs protoc: apt-get install protobuf-compiler;
## the generators are pinned in tools/go.mod)
proto:
	cd tools && $(GO) build -o ../bin/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	cd plugins/proto && PATH="$(CURDIR)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative runtime.proto

purego:
	$(GO) test -tags purego ./backends/cpu

## mpi-test: the MPI binding and densessm-mpi under mpirun on this machine (1, 2 and 3 ranks, a rank
## killed, a resume on another number of ranks; about 15 s). It needs an MPI library with its
## pkg-config file and mpirun (Debian: apt-get install libopenmpi-dev openmpi-bin); where they are
## missing it says so and passes, unless REQUIRE_MPI=1 (CI's .ci/run sets it and installs them).
mpi-test:
	@if ! pkg-config --exists ompi 2>/dev/null || ! command -v mpirun >/dev/null; then \
		if [ "$(REQUIRE_MPI)" = 1 ]; then echo "mpi-test: no MPI here: apt-get install libopenmpi-dev openmpi-bin pkg-config" >&2; exit 1; fi; \
		echo "mpi-test: SKIPPED: no MPI here (apt-get install libopenmpi-dev openmpi-bin pkg-config)"; exit 0; \
	fi; \
	set -ex; \
	$(GO) vet -tags mpi ./distributed/... ./cmd/densessm-mpi; \
	$(GO) test -tags mpi -count=1 ./distributed/... ./cmd/densessm-mpi

## cuda-test: the CUDA backend's tests that need no GPU (backends/cuda/...), built with CGO_ENABLED=0:
## the loaders' error paths, every kernel source compiled by NVRTC to PTX for sm_80 and sm_90 and
## to a CUBIN for sm_90, with libnvrtc from the pinned nvidia-cuda-nvrtc wheel (installed into NVRTC_VENV
## the first time; a few seconds after that), and the kernels' CUDA C run on the CPU by the emulator
## (built with g++; docs/cuda.md)
cuda-test: $(NVRTC_VENV)/.densessm-nvrtc
	DENSESSM_NVRTC="$$(echo '$(NVRTC_VENV)'/lib/python3*/site-packages)" DENSESSM_REQUIRE_NVRTC=1 DENSESSM_REQUIRE_EMU=1 \
		CGO_ENABLED=0 $(GO) test -count=1 ./backends/cuda/...

## cuda-ptx: rebuild the prebuilt PTX (backends/cuda/kernels/ptx/, compute_80, PTX ISA 8.4) that the
## CUDA backend loads where a machine has no NVRTC, with NVRTC PTX_NVRTC_VERSION; needed after a change
## to a kernel source (TestPrebuiltPTX fails until then)
cuda-ptx: $(PTX_NVRTC_VENV)/.densessm-nvrtc
	DENSESSM_NVRTC="$$(echo '$(PTX_NVRTC_VENV)'/lib/python3*/site-packages)" DENSESSM_REQUIRE_NVRTC=1 \
		CGO_ENABLED=0 $(GO) test -count=1 -run 'TestPrebuiltPTX' ./backends/cuda/kernels -update-ptx

$(PTX_NVRTC_VENV)/.densessm-nvrtc:
	@set -e; rm -rf '$(PTX_NVRTC_VENV)'; python3 -m venv '$(PTX_NVRTC_VENV)'; \
	'$(PTX_NVRTC_VENV)/bin/python' -m pip install --disable-pip-version-check -q --no-deps nvidia-cuda-nvrtc-cu12==$(PTX_NVRTC_VERSION); \
	touch '$@'

$(NVRTC_VENV)/.densessm-nvrtc:
	@set -e; rm -rf '$(NVRTC_VENV)'; python3 -m venv '$(NVRTC_VENV)'; \
	'$(NVRTC_VENV)/bin/python' -m pip install --disable-pip-version-check -q --no-deps nvidia-cuda-nvrtc==$(NVRTC_VERSION); \
	touch '$@'

## gpu-bundle: build what scripts/gpu-check.sh runs (the CUDA packages' test binaries, densessm and the
## plugin; linux/amd64, CGO_ENABLED=0) into gpu-bundle/bundle.tar.xz, for a GPU machine without Go
## (docs/cuda.md, "The device check"); prints its size against the 64 MiB a device run carries
gpu-bundle:
	scripts/gpu-check.sh --bundle gpu-bundle

## nccl-test: backends/cuda/nccl against the pinned wheel's libnccl (its version and a unique id
## without a GPU; the all-reduce test where GPUs are present); not part of `make test`
nccl-test: $(NCCL_VENV)/.densessm-nccl
	DENSESSM_NCCL="$$(echo '$(NCCL_VENV)'/lib/python3*/site-packages)" DENSESSM_REQUIRE_NCCL=1 \
		CGO_ENABLED=0 $(GO) test -count=1 -v ./backends/cuda/nccl

$(NCCL_VENV)/.densessm-nccl:
	@set -e; rm -rf '$(NCCL_VENV)'; python3 -m venv '$(NCCL_VENV)'; \
	'$(NCCL_VENV)/bin/python' -m pip install --disable-pip-version-check -q --no-deps nvidia-nccl-cu13==$(NCCL_VERSION); \
	touch '$@'

## mpi: build bin/densessm-mpi, densessm train data parallel over MPI (docs/distributed.md)
mpi:
	$(GO) build -tags mpi -o bin/densessm-mpi ./cmd/densessm-mpi

## bench-mpi: training tokens/s on 1 process and on 2 MPI ranks, and the all-reduce's share of the
## step time (bench/mpi_scaling.sh; about 2 minutes on 2 cores)
bench-mpi:
	bash bench/mpi_scaling.sh

## python-test: install the Python package from pybind/ into PYVENV with pip (building the
## extension with gopy and the Go toolchain) and run its pytest suite (pybind/tests)
python-test: python-install
	'$(PYVENV)/bin/pytest' -q -p no:cacheprovider --rootdir pybind pybind/tests

python-install: pyvenv
	'$(PYVENV)/bin/python' -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps --force-reinstall ./pybind

## wheel: build the Python package's wheel into dist/, tagged manylinux for this machine's glibc
## (the extension links libc only; see docs/python.md)
wheel: pyvenv
	rm -rf dist/densessm-*.whl
	'$(PYVENV)/bin/python' -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps -w dist ./pybind
	glibc=$$('$(PYVENV)/bin/python' -c 'import platform; print(platform.libc_ver()[1].replace(".", "_"))'); \
	'$(PYVENV)/bin/python' -m wheel tags --remove --platform-tag manylinux_$${glibc}_$$(uname -m) dist/densessm-*.whl
	@ls dist/densessm-*.whl

## bench-python: what crossing from Python costs (a trivial call, logits of 1024×50280 into NumPy
## against the same forward in Go) and encode_batch against Hugging Face tokenizers (a few minutes)
bench-python: python-install
	'$(PYVENV)/bin/python' bench/python_overhead.py $(BENCH_PYTHON_ARGS)

## pyvenv: the virtual environment of python-test and wheel (PYVENV), from pybind/requirements-dev.txt
pyvenv: $(PYVENV_STAMP)

$(PYVENV_STAMP): pybind/requirements-dev.txt
	@set -e; \
	if [ ! -x '$(PYVENV)/bin/python' ]; then $(PYVENV_BASE) -m venv '$(PYVENV)'; fi; \
	rm -f '$@'; \
	'$(PYVENV)/bin/python' -m pip install --disable-pip-version-check -q -r $<; \
	cp $< '$@'

build:
	$(GO) build -o bin/densessm ./cmd/densessm

## bench: GEMM throughput (GFLOP/s) at the sizes docs/benchmarks.md records
bench:
	$(GO) test ./backends/cpu -run '^$$' -bench 'MatMul' -benchtime 5x

## bench-compare: densessm side by side with OpenBLAS, a memory-bandwidth probe, PyTorch and llama.cpp
## (~7 min without llama.cpp, 37 min with it on a shared 2-core Zen 3; the first run builds llama.cpp,
## as `make llamacpp` does; BENCH_COMPARE_ARGS passes options, e.g. '--no-llamacpp' or '--pp4096')
bench-compare: $(PYREF_DEP)
	PYTHON='$(PYTHON)' bash bench/compare.sh $(BENCH_COMPARE_ARGS)

## llamacpp: build llama.cpp's llama-bench from the pinned llama-cpp-python sdist and convert the random
## mamba-130m of bench/torch_models.py to GGUF f32, bf16 and q8_0 (bench/llamacpp.sh), in LLAMACPP_DIR
## (default ~/.cache/densessm/llamacpp); 6.5 min and 77 MB the first time, then it does nothing
llamacpp: $(PYREF_DEP)
	PYTHON='$(PYTHON)' bash bench/llamacpp.sh

## bench-models: prefill and decode tokens/s of mamba-130m- and DenseRetNet-350M-shaped models
## (at GOGC 25 unless GOGC is set, as the densessm command runs)
bench-models:
	GOGC=$${GOGC:-25} $(GO) test ./architectures/mamba ./architectures/retnet -run '^$$' -bench . -benchtime 3x -timeout 30m

## fuzz: every parser of untrusted input under the Go fuzzer, FUZZTIME each (default 5m)
fuzz:
	$(GO) test ./checkpoint -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./checkpoint -run '^$$' -fuzz '^FuzzOpenPyTorch$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./checkpoint -run '^$$' -fuzz '^FuzzPyTorchPickle$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./checkpoint -run '^$$' -fuzz '^FuzzReadState$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./tokenizer -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./tokenizer -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./tokenizer -run '^$$' -fuzz '^FuzzEncodeReader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./architectures/mamba -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./architectures/retnet -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./internal/cli -run '^$$' -fuzz '^FuzzParseIDs$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./data -run '^$$' -fuzz '^FuzzOpenTokens$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./data -run '^$$' -fuzz '^FuzzJSONL$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./data -run '^$$' -fuzz '^FuzzArrow$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./data -run '^$$' -fuzz '^FuzzParquet$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./plugins/internal/wire -run '^$$' -fuzz '^FuzzDecodeTensor$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./plugins/internal/wire -run '^$$' -fuzz '^FuzzReadTensorStream$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x

## fixtures: regenerate the committed safetensors and PyTorch .bin fixtures (see the scripts' docstrings)
fixtures: $(PYREF_DEP)
	$(PYTHON) scripts/make_safetensors_fixture.py
	$(PYTHON) scripts/make_pytorch_bin_fixture.py

## mamba-fixtures: regenerate architectures/mamba/testdata with transformers, and check that
## transformers loads models densessm writes and gives our logits
mamba-fixtures: $(PYREF_DEP)
	$(PYTHON) scripts/make_mamba_fixtures.py

## retnet-fixtures: regenerate architectures/retnet/testdata (torchscale and scripts/denseretnet_reference.py)
retnet-fixtures: $(PYREF_DEP)
	$(PYTHON) scripts/make_retnet_fixtures.py

## tokenizer-fixtures: regenerate tokenizer/testdata with Hugging Face tokenizers
tokenizer-fixtures: $(PYREF_DEP)
	$(PYTHON) scripts/make_tokenizer_fixtures.py

## data-fixtures: regenerate data/testdata (Parquet, Arrow IPC, JSONL and text corpora) with
## Hugging Face datasets and pyarrow
data-fixtures: $(PYREF_DEP)
	$(PYTHON) scripts/make_data_fixtures.py

## tokenizer-bench: encode MB/s of densessm and Hugging Face tokenizers, side by side
tokenizer-bench: $(PYREF_DEP)
	$(PYTHON) scripts/compare_tokenizer_hf.py

## tokenize-bench-cli: end-to-end MB/s and peak RSS of `densessm tokenize --count` beside tiktoken
## and HF tokenizers, one process per run on one core, on 4 and 40 MB of Go source (a few minutes;
## TOKBENCH_ARGS passes options, e.g. TOKBENCH_ARGS='--rounds 5 --densessm bin/densessm')
tokenize-bench-cli: $(PYREF_DEP)
	$(PYTHON) scripts/compare_tokenize_cli.py $(TOKBENCH_ARGS)

## pyref: build the Python environment of the scripts in PYREF (default ~/.cache/densessm/pyref)
## from scripts/requirements-pyref.txt; downloads ~3 GB the first time, then does nothing until
## the requirements change
pyref: $(PYREF_STAMP)

$(PYREF_STAMP): scripts/requirements-pyref.txt
	@if [ -x '$(PYREF)/bin/python' ] && cmp -s $< '$@'; then touch '$@'; exit 0; fi; \
	set -e; \
	if [ ! -x '$(PYREF)/bin/python' ]; then \
		echo "creating the virtual environment $(PYREF) with $(PYREF_BASE)"; \
		$(PYREF_BASE) -m venv '$(PYREF)'; \
	fi; \
	rm -f '$@'; \
	'$(PYREF)/bin/python' -m pip install --disable-pip-version-check $(PYREF_PIP_FLAGS) -r $<; \
	'$(PYREF)/bin/python' -m pip check; \
	'$(PYREF)/bin/python' -c 'import datasets, numpy, pyarrow, safetensors, tiktoken, tokenizers, torch, torchscale, transformers'; \
	cp $< '$@'; \
	echo "$(PYREF) is ready: make's script targets use $(PYREF)/bin/python"

## bench-train: training tokens/s and MFU of the default model's shape at 1 and 2 threads, next to
## PyTorch on the same shape, and its decode tokens/s (bench/train_compare.py; about 10 minutes)
bench-train: $(PYREF_DEP)
	go build -o /tmp/densessm-bench-train ./cmd/densessm
	$(PYTHON) bench/train_compare.py --densessm /tmp/densessm-bench-train --python $(PYTHON)

## experiment: the dense-vs-base experiment (experiments/dense-vs-base/config.yaml; 1 h 24 min here): 45 training
## runs, speed and memory of each model, the tables and loss curves written into
## docs/experiments/dense-vs-base.md. Resumable: rerun it to go on after an interruption
## (the runs live in ~/.cache/densessm/dense-vs-base; EXPERIMENT_ARGS passes options).
experiment:
	$(GO) run ./experiments/dense-vs-base --doc docs/experiments/dense-vs-base.md $(EXPERIMENT_ARGS)

## experiment-quick: the same program on tiny models (about a minute; `make test` runs it as TestQuick)
experiment-quick:
	$(GO) run ./experiments/dense-vs-base --quick $(EXPERIMENT_ARGS)

## default-model: train the embedded default model from scratch (defaultmodel/train.yaml, about an
## hour on 2 cores) and write it into defaultmodel/model in bfloat16. The run lives in
## DEFAULT_MODEL_RUN; when it is there already, the run is resumed (delete it to start over).
DEFAULT_MODEL_RUN ?= $(HOME)/.cache/densessm/default-model-run
default-model:
	go build -tags nodefaultmodel -o $(DEFAULT_MODEL_RUN).bin ./cmd/densessm
	@start=$$(date +%s); \
	if [ -f $(DEFAULT_MODEL_RUN)/train.json ]; then \
		$(DEFAULT_MODEL_RUN).bin train --resume --out $(DEFAULT_MODEL_RUN) || exit 1; \
	else \
		$(DEFAULT_MODEL_RUN).bin train --config defaultmodel/train.yaml --out $(DEFAULT_MODEL_RUN) || exit 1; \
	fi; \
	$(DEFAULT_MODEL_RUN).bin convert --in $(DEFAULT_MODEL_RUN) --out defaultmodel/model --dtype bf16 || exit 1; \
	echo "default model: trained and written to defaultmodel/model in $$(( $$(date +%s) - start )) s"
