# densessm: build, test, and the long checks that are not part of `make test`.
GO ?= go
# The Python with torch, transformers and safetensors that the fixture scripts use
# (see the docstrings of scripts/*.py for the pinned versions).
PYTHON ?= /opt/pyref/bin/python
FUZZTIME ?= 5m

.PHONY: test fmt-check vet unit purego build bench fuzz fixtures mamba-fixtures retnet-fixtures tokenizer-fixtures tokenizer-bench bench-models bench-compare

## test: everything CI runs (format check, vet, unit tests, and the CPU backend without assembly)
test: fmt-check vet unit purego

fmt-check:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test ./...

purego:
	$(GO) test -tags purego ./backends/cpu

build:
	$(GO) build -o bin/densessm ./cmd/densessm

## bench: GEMM throughput (GFLOP/s) at the sizes docs/benchmarks.md records
bench:
	$(GO) test ./backends/cpu -run '^$$' -bench 'MatMul' -benchtime 5x

## bench-compare: densessm side by side with OpenBLAS, a memory-bandwidth probe and PyTorch (~7 min)
bench-compare:
	bash bench/compare.sh

## bench-models: prefill and decode tokens/s of mamba-130m- and DenseRetNet-350M-shaped models
## (at GOGC 25 unless GOGC is set, as the densessm command runs)
bench-models:
	GOGC=$${GOGC:-25} $(GO) test ./architectures/mamba ./architectures/retnet -run '^$$' -bench . -benchtime 3x -timeout 30m

## fuzz: every file reader under the Go fuzzer, FUZZTIME each (default 5m)
fuzz:
	$(GO) test ./checkpoint -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./checkpoint -run '^$$' -fuzz '^FuzzOpenPyTorch$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./checkpoint -run '^$$' -fuzz '^FuzzPyTorchPickle$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./tokenizer -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x
	$(GO) test ./tokenizer -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x

## fixtures: regenerate the committed safetensors and PyTorch .bin fixtures (see the scripts' docstrings)
fixtures:
	$(PYTHON) scripts/make_safetensors_fixture.py
	$(PYTHON) scripts/make_pytorch_bin_fixture.py

## mamba-fixtures: regenerate architectures/mamba/testdata with transformers, and check that
## transformers loads models densessm writes and gives our logits
mamba-fixtures:
	$(PYTHON) scripts/make_mamba_fixtures.py

## retnet-fixtures: regenerate architectures/retnet/testdata (torchscale and scripts/denseretnet_reference.py)
retnet-fixtures:
	$(PYTHON) scripts/make_retnet_fixtures.py

## tokenizer-fixtures: regenerate tokenizer/testdata with Hugging Face tokenizers
tokenizer-fixtures:
	$(PYTHON) scripts/make_tokenizer_fixtures.py

## tokenizer-bench: encode MB/s of densessm and Hugging Face tokenizers, side by side
tokenizer-bench:
	$(PYTHON) scripts/compare_tokenizer_hf.py
