package cli

// The guarantees of docs/reliability.md, tested: bad input gives one line
// on stderr, a non-zero status and no file; outputs are validated before
// the work and replaced atomically; a full disk keeps the previous file;
// SIGINT and SIGTERM stop every long command with 130/143 and no temporary
// file; kill -9 mid-write leaves the previous file intact.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/internal/atomicfile"
)

// mainEnv makes the test binary run the command line instead of the tests:
// the signal and kill tests run the CLI as a child process.
const mainEnv = "DENSESSM_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// child returns the CLI as a child process (the test binary in main mode).
func child(t *testing.T, stdin io.Reader, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(exe, args...)
	c.Env = append(os.Environ(), mainEnv+"=1")
	c.Stdin = stdin
	var stderr strings.Builder
	c.Stderr = &stderr
	return c, &stderr
}

// tinyModelDir saves a small Mamba (vocab 48) into a new directory.
func tinyModelDir(t *testing.T) string {
	t.Helper()
	cfg := mamba.DefaultConfig(mamba.NameMamba)
	cfg.VocabSize, cfg.HiddenSize, cfg.NumHiddenLayers, cfg.IntermediateSize = 48, 16, 2, 32
	m, err := mamba.New(cfg, cpu.New(api.BackendOptions{Threads: 1}), 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if err := checkpoint.SaveModel(context.Background(), dir, m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// listFiles returns every path under dir, relative to it.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && path != dir {
			rel, _ := filepath.Rel(dir, path)
			names = append(names, rel)
		}
		return nil
	})
	return names
}

// writeFile creates dir/name holding data and returns its path.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// editConfig copies the model directory src to a new one whose config.json
// is changed by edit.
func editConfig(t *testing.T, src string, edit func(cfg string) string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "edited")
	os.MkdirAll(dst, 0o755)
	for _, name := range []string{checkpoint.ConfigFileName, checkpoint.SingleFileName} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == checkpoint.ConfigFileName {
			data = []byte(edit(string(data)))
		}
		os.WriteFile(filepath.Join(dst, name), data, 0o644)
	}
	return dst
}

// replaceField sets a JSON field of a config.json written by SaveModel
// (one field per line, `"name": value`).
func replaceField(cfg, field, value string) string {
	lines := strings.Split(cfg, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), `"`+field+`":`) {
			comma := ""
			if strings.HasSuffix(l, ",") {
				comma = ","
			}
			lines[i] = fmt.Sprintf("  %q: %s%s", field, value, comma)
		}
	}
	return strings.Join(lines, "\n")
}

// TestBadInputs drives every command with bad input and checks that each
// gives one line on stderr, a non-zero status, nothing on stdout and no
// new file.
func TestBadInputs(t *testing.T) {
	model := tinyModelDir(t)
	in := t.TempDir() // inputs
	out := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.IntN(256))
	}
	empty := writeFile(t, in, "empty", "")
	junk := writeFile(t, in, "random.bin", string(random))
	rawPickle := writeFile(t, in, "raw.bin", "\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.")
	hugeVocab := writeFile(t, in, "huge-vocab.json", `{"model_type": "mamba", "vocab_size": 1000000000000, "hidden_size": 16, "num_hidden_layers": 2}`)
	hugeModel := writeFile(t, in, "huge-model.json", `{"model_type": "mamba", "vocab_size": 1000, "hidden_size": 65536, "num_hidden_layers": 100000}`)
	bigModel := writeFile(t, in, "big-model.json", `{"model_type": "mamba", "vocab_size": 50000, "hidden_size": 8192, "num_hidden_layers": 64}`)
	negativeDT := writeFile(t, in, "dt.json", `{"model_type": "mamba", "vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 2, "time_step_min": -5, "time_step_max": -1}`)
	fewerLayers := editConfig(t, model, func(c string) string { return replaceField(c, "num_hidden_layers", "1") })
	nanModel := editConfig(t, model, func(c string) string { return c })
	poisonWeights(t, nanModel)
	dirAsFile := t.TempDir()
	devZero := "/dev/zero"
	if _, err := os.Stat(devZero); err != nil {
		devZero = empty
	}
	tok := "../../tokenizer/testdata/gpt2.json"
	corpus := writeFile(t, in, "corpus/a.txt", strings.Repeat("hello world, hello tokens\n", 50))
	existing := writeFile(t, out, "existing", "keep me")
	badTrainConfig := writeFile(t, in, "train.yaml", "steps: 10\nlearning_rate: 0.1\n")
	badLabel := writeFile(t, in, "task.jsonl", `{"context": "a", "choices": ["b", "c"], "label": 0}`+"\n"+`{"context": "a", "choices": ["b", "c"], "label": 2}`+"\n")

	cases := []struct {
		name  string
		stdin string
		args  []string
		want  string // a part of the error line
	}{
		{"unknown command", "", []string{"frobnicate"}, "frobnicate"},
		{"unknown flag", "", []string{"archs", "--colour"}, "--colour"},
		{"version with an argument", "", []string{"version", "extra"}, "extra"},
		{"backends with an argument", "", []string{"backends", "extra"}, "extra"},
		{"plugins list with an argument", "", []string{"plugins", "list", "extra"}, "extra"},
		{"plugins lock file under a file", "", []string{"plugins", "lock", "--file", filepath.Join(empty, "plugins.lock")}, "plugin lock"},
		{"init unknown backend", "", []string{"init", "--arch", "mamba", "--backend", "abacus", "--out", filepath.Join(out, "m")}, "abacus"},
		{"logits unknown backend", "", []string{"logits", "--model", model, "--ids", "1", "--backend", "abacus", "--out", filepath.Join(out, "l.npy")}, "abacus"},
		{"generate unknown backend", "", []string{"generate", "--backend", "abacus", "x"}, "abacus"},
		{"generate unknown weights", "", []string{"generate", "--weights", "q4", "x"}, "--weights"},
		{"generate state not a state file", "", []string{"generate", "--state", fixture, "x"}, "not a state file"},
		{"generate state of two prompts", "", []string{"generate", "--save-state", filepath.Join(out, "s"), "x", "y"}, "one prompt"},
		{"verify too few tokens", "", []string{"verify", "--tokens", "3"}, "tokens 3"},
		{"verify drift of a q8 model", "", []string{"verify", "--weights", "q8", "--drift", "8"}, "--drift compares"},
		{"eval unknown weights", "", []string{"eval", "ppl", "--weights", "int8", "--data", corpus}, "--weights"},
		{"bench model unknown weights", "", []string{"bench", "model", "--arch", "mamba", "--weights", "f16"}, "--weights"},
		{"train a low-precision model", "", []string{"bench", "model", "--arch", "mamba", "--weights", "q8", "--prefill", "0", "--decode", "0", "--train-step"}, "training needs F32 weights"},
		{"inspect empty", "", []string{"inspect", empty}, "empty"},
		{"inspect directory", "", []string{"inspect", dirAsFile}, dirAsFile},
		{"inspect random bytes", "", []string{"inspect", junk}, "random.bin"},
		{"inspect raw pickle", "", []string{"inspect", rawPickle}, "legacy"},
		{"inspect missing", "", []string{"inspect", filepath.Join(in, "nope")}, "nope"},

		{"logits no model dir", "", []string{"logits", "--model", filepath.Join(in, "nope"), "--ids", "1", "--out", filepath.Join(out, "l.npy")}, "nope"},
		{"logits model is a file", "", []string{"logits", "--model", empty, "--ids", "1", "--out", filepath.Join(out, "l.npy")}, "not a directory"},
		{"logits empty model dir", "", []string{"logits", "--model", dirAsFile, "--ids", "1", "--out", filepath.Join(out, "l.npy")}, "config.json"},
		{"logits bad id", "", []string{"logits", "--model", model, "--ids", "1,x", "--out", filepath.Join(out, "l.npy")}, "'x'"},
		{"logits negative id", "", []string{"logits", "--model", model, "--ids", "-1", "--out", filepath.Join(out, "l.npy")}, "negative"},
		{"logits double comma", "", []string{"logits", "--model", model, "--ids", "1,,2", "--out", filepath.Join(out, "l.npy")}, "','"},
		{"logits id past vocab", "", []string{"logits", "--model", model, "--ids", "1,2,48", "--mode", "recurrent", "--out", filepath.Join(out, "l.npy")}, "position 2"},
		{"logits no ids on stdin", "", []string{"logits", "--model", model, "--out", filepath.Join(out, "l.npy")}, "no token ids"},
		{"logits ids file zero bytes", "", []string{"logits", "--model", model, "--ids-file", devZero, "--out", filepath.Join(out, "l.npy")}, "--ids-file"},
		{"logits ids file directory", "", []string{"logits", "--model", model, "--ids-file", dirAsFile, "--out", filepath.Join(out, "l.npy")}, "--ids-file"},
		{"logits negative threads", "", []string{"logits", "--model", model, "--ids", "1", "--threads", "-1", "--out", filepath.Join(out, "l.npy")}, "threads"},
		{"logits bad mode", "", []string{"logits", "--model", model, "--ids", "1", "--mode", "sideways", "--out", filepath.Join(out, "l.npy")}, "sideways"},
		{"logits chunk 0", "", []string{"logits", "--model", model, "--ids", "1", "--mode", "chunkwise", "--chunk", "0", "--out", filepath.Join(out, "l.npy")}, "--chunk"},
		{"logits out is a directory", "", []string{"logits", "--model", model, "--ids", "1", "--out", out}, "is a directory"},
		{"logits out in missing directory", "", []string{"logits", "--model", model, "--ids", "1", "--out", filepath.Join(out, "no", "l.npy")}, "not writable"},
		{"logits fewer layers than weights", "", []string{"logits", "--model", fewerLayers, "--ids", "1", "--out", filepath.Join(out, "l.npy")}, "num_hidden_layers"},
		{"logits non-finite weights", "", []string{"logits", "--model", nanModel, "--ids", "1", "--out", filepath.Join(out, "l.npy")}, "not finite"},
		{"logits memory budget", "", []string{"logits", "--model", model, "--ids", "1,2", "--max-memory", "1KiB", "--out", filepath.Join(out, "l.npy")}, "--max-memory"},
		{"logits bad budget", "", []string{"logits", "--model", model, "--ids", "1,2", "--max-memory", "lots", "--out", filepath.Join(out, "l.npy")}, "--max-memory"},

		{"init config zero bytes", "", []string{"init", "--arch", "mamba", "--config", devZero, "--out", filepath.Join(out, "m")}, "--config"},
		{"init config empty", "", []string{"init", "--arch", "mamba", "--config", empty, "--out", filepath.Join(out, "m")}, "--config"},
		{"init config random", "", []string{"init", "--arch", "mamba", "--config", junk, "--out", filepath.Join(out, "m")}, "--config"},
		{"init config directory", "", []string{"init", "--arch", "mamba", "--config", dirAsFile, "--out", filepath.Join(out, "m")}, "--config"},
		{"init vocab 1e12", "", []string{"init", "--arch", "mamba", "--config", hugeVocab, "--out", filepath.Join(out, "m")}, "vocab_size"},
		{"init 100000 layers of 65536", "", []string{"init", "--arch", "mamba", "--config", hugeModel, "--out", filepath.Join(out, "m")}, ""},
		{"init over the budget", "", []string{"init", "--arch", "mamba", "--config", bigModel, "--max-memory", "1GiB", "--out", filepath.Join(out, "m")}, "more than the 1.0 GiB allowed by --max-memory"},
		{"init negative time steps", "", []string{"init", "--arch", "mamba", "--config", negativeDT, "--out", filepath.Join(out, "m")}, "time_step_min"},
		{"init unknown arch", "", []string{"init", "--arch", "transformer", "--out", filepath.Join(out, "m")}, "transformer"},
		{"init out is a file", "", []string{"init", "--arch", "mamba", "--out", existing}, "not a directory"},

		{"convert missing input", "", []string{"convert", "--in", filepath.Join(in, "nope"), "--out", filepath.Join(out, "c")}, "nope"},
		{"convert random bytes", "", []string{"convert", "--in", junk, "--out", filepath.Join(out, "c.safetensors")}, "random.bin"},
		{"convert fewer layers", "", []string{"convert", "--in", fewerLayers, "--out", filepath.Join(out, "c")}, "num_hidden_layers"},
		{"convert bad dtype", "", []string{"convert", "--in", model, "--dtype", "f8", "--out", filepath.Join(out, "c")}, "f8"},
		{"convert dtype of a file", "", []string{"convert", "--in", filepath.Join(model, checkpoint.SingleFileName), "--dtype", "bf16", "--out", filepath.Join(out, "c.safetensors")}, "--dtype"},
		{"convert with --weights", "", []string{"convert", "--in", model, "--dtype", "q8", "--weights", "q8", "--out", filepath.Join(out, "c")}, "--dtype sets how the weights are stored"},
		{"convert file to stdout", "", []string{"convert", "--in", filepath.Join(model, checkpoint.SingleFileName), "--out", "-"}, "--out -"},

		{"tokenize tokenizer zero bytes", "hi", []string{"tokenize", "--tokenizer", devZero}, ""},
		{"tokenize tokenizer empty", "hi", []string{"tokenize", "--tokenizer", empty}, "empty"},
		{"tokenize tokenizer directory", "hi", []string{"tokenize", "--tokenizer", dirAsFile}, ""},
		{"tokenize tokenizer random", "hi", []string{"tokenize", "--tokenizer", junk}, "random.bin"},
		{"tokenize decode junk", "[1,", []string{"tokenize", "--decode", "--tokenizer", tok}, "--decode"},
		{"tokenizer train out in missing dir", "", []string{"tokenizer", "train", "--vocab-size", "300", "--out", filepath.Join(out, "no", "t.json"), filepath.Dir(corpus)}, "not writable"},
		{"tokenizer train duplicate special", "", []string{"tokenizer", "train", "--vocab-size", "300", "--special", "a,a", "--out", filepath.Join(out, "t.json"), filepath.Dir(corpus)}, `"a"`},
		{"tokenizer train vocab 0", "", []string{"tokenizer", "train", "--vocab-size", "0", "--out", filepath.Join(out, "t.json"), filepath.Dir(corpus)}, "vocab"},
		{"tokenizer train empty corpus", "", []string{"tokenizer", "train", "--vocab-size", "300", "--out", filepath.Join(out, "t.json"), dirAsFile}, "no text files"},

		{"train unknown arch", "", []string{"train", "--arch", "transformer", "--data", filepath.Dir(corpus), "--out", filepath.Join(out, "run")}, "transformer"},
		{"train missing data", "", []string{"train", "--data", filepath.Join(in, "nope"), "--out", filepath.Join(out, "run")}, "nope"},
		{"train empty data folder", "", []string{"train", "--data", dirAsFile, "--out", filepath.Join(out, "run")}, "--data"},
		{"train nan lr", "", []string{"train", "--lr", "NaN", "--data", filepath.Dir(corpus), "--out", filepath.Join(out, "run")}, "--lr"},
		{"train warmup past steps", "", []string{"train", "--steps", "10", "--warmup", "20", "--data", filepath.Dir(corpus), "--out", filepath.Join(out, "run")}, "--warmup"},
		{"train bad optimizer", "", []string{"train", "--optimizer", "lion", "--data", filepath.Dir(corpus), "--out", filepath.Join(out, "run")}, "lion"},
		{"train resume without a run", "", []string{"train", "--resume", "--out", filepath.Join(out, "run")}, "no training run"},
		{"train resume with another lr", "", []string{"train", "--resume", "--lr", "0.1", "--out", filepath.Join(out, "run")}, "--lr cannot change"},
		{"train config unknown key", "", []string{"train", "--config", badTrainConfig, "--data", filepath.Dir(corpus), "--out", filepath.Join(out, "run")}, `"learning_rate"`},
		{"train config random", "", []string{"train", "--config", junk, "--out", filepath.Join(out, "run")}, "--config"},
		{"train model config out of domain", "", []string{"train", "--model-config", negativeDT, "--arch", "mamba", "--data", filepath.Dir(corpus), "--out", filepath.Join(out, "run")}, "time_step_min"},
		{"train tokenizer random", "", []string{"train", "--tokenizer", junk, "--data", filepath.Dir(corpus), "--out", filepath.Join(out, "run")}, "random.bin"},
		{"train over the budget", "", []string{"train", "--arch", "mamba", "--model-config", bigModel, "--tokenizer", tok, "--max-memory", "1GiB", "--data", filepath.Dir(corpus), "--out", filepath.Join(out, "run")}, "--max-memory"},
		{"train out is a file", "", []string{"train", "--out", existing}, "not a directory"},

		{"tune-state no out", "", []string{"tune-state", "--data", filepath.Dir(corpus)}, "out"},
		{"tune-state missing data", "", []string{"tune-state", "--data", filepath.Join(in, "nope"), "--out", filepath.Join(out, "s")}, "nope"},
		{"tune-state negative prefix", "", []string{"tune-state", "--data", filepath.Dir(corpus), "--prefix", "-1", "--out", filepath.Join(out, "s")}, "--prefix -1"},
		{"tune-state out in missing dir", "", []string{"tune-state", "--data", filepath.Dir(corpus), "--out", filepath.Join(out, "no", "s")}, "not writable"},
		{"tune-state state not a state file", "", []string{"tune-state", "--data", filepath.Dir(corpus), "--state", fixture, "--out", filepath.Join(out, "s")}, "not a state file"},
		{"tune-state warmup past steps", "", []string{"tune-state", "--data", filepath.Dir(corpus), "--steps", "5", "--warmup", "9", "--out", filepath.Join(out, "s")}, "--warmup"},
		{"tune-state q8 weights", "", []string{"tune-state", "--data", filepath.Dir(corpus), "--weights", "q8", "--out", filepath.Join(out, "s")}, "F32"},

		{"generate no prompt", "", []string{"generate"}, "arg"},
		{"generate negative temperature", "", []string{"generate", "--temperature", "-1", "x"}, "--temperature"},
		{"generate top-p 2", "", []string{"generate", "--top-p", "2", "x"}, "--top-p"},
		{"generate negative eos", "", []string{"generate", "--eos", "-3", "x"}, "--eos"},
		{"generate empty stop", "", []string{"generate", "--stop", "", "x"}, "--stop"},
		{"generate missing model", "", []string{"generate", "--model", filepath.Join(in, "nope"), "x"}, "nope"},
		{"generate model without tokenizer", "", []string{"generate", "--model", model, "x"}, "tokenizer.json"},
		{"generate tokenizer past the model", "", []string{"generate", "--model", model, "--tokenizer", tok, "x"}, "1001 tokens"},
		{"generate tokenizer random", "", []string{"generate", "--tokenizer", junk, "x"}, "random.bin"},

		{"eval ppl no data", "", []string{"eval", "ppl"}, "data"},
		{"eval ppl missing data", "", []string{"eval", "ppl", "--data", filepath.Join(in, "nope")}, "nope"},
		{"eval ppl bad mode", "", []string{"eval", "ppl", "--data", corpus, "--mode", "sideways"}, "sideways"},
		{"eval ppl stride past context", "", []string{"eval", "ppl", "--data", corpus, "--mode", "parallel", "--context", "8", "--stride", "9"}, "--stride"},
		{"eval ppl state in the parallel mode", "", []string{"eval", "ppl", "--data", corpus, "--mode", "parallel", "--state", fixture}, "--state"},
		{"eval ppl doc resets in the parallel mode", "", []string{"eval", "ppl", "--data", corpus, "--mode", "parallel", "--doc-resets"}, "--doc-resets"},
		{"eval ppl state not a state file", "", []string{"eval", "ppl", "--data", corpus, "--state", fixture}, "not a state file"},
		{"eval mc missing task", "", []string{"eval", "mc", "--task", filepath.Join(in, "nope.jsonl")}, "nope.jsonl"},
		{"eval mc random task", "", []string{"eval", "mc", "--task", junk}, "line 1"},
		{"eval mc label out of range", "", []string{"eval", "mc", "--task", badLabel}, "line 2"},

		{"bench gemm too large", "", []string{"bench", "gemm", "--m", "1000000", "--n", "1000000"}, "GEMM"},
		{"bench gemm negative threads", "", []string{"bench", "gemm", "--m", "8", "--n", "8", "--k", "8", "--threads", "-1"}, "threads"},
		{"bench model nan lr", "", []string{"bench", "model", "--arch", "mamba", "--lr", "NaN"}, "--lr"},
		{"bench model vocab 1e12", "", []string{"bench", "model", "--arch", "mamba", "--config", hugeVocab}, "vocab_size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := listFiles(t, out)
			stdout, stderr, st := runCLIInput(t, c.stdin, c.args...)
			if st == 0 || stdout != "" {
				t.Errorf("status %d, stdout %q", st, stdout)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "densessm: ") || !strings.Contains(stderr, c.want) ||
				strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
				t.Errorf("want one line holding %q, got %q", c.want, stderr)
			}
			if after := listFiles(t, out); !slices.Equal(before, after) {
				t.Errorf("files changed: %v -> %v", before, after)
			}
		})
	}
	if data, _ := os.ReadFile(existing); string(data) != "keep me" {
		t.Errorf("an existing file was changed to %q", data)
	}
}

// poisonWeights writes a NaN into the first float32 tensor of the model in dir.
func poisonWeights(t *testing.T, dir string) {
	t.Helper()
	ck, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var tensors []checkpoint.NamedTensor
	for i, ti := range ck.Tensors() {
		raw, err := ck.Raw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		raw = slices.Clone(raw)
		if i == 0 {
			copy(raw, []byte{0, 0, 0xc0, 0x7f}) // a float32 NaN
		}
		tensors = append(tensors, checkpoint.NamedTensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: raw})
	}
	ck.Close()
	if err := checkpoint.Write(context.Background(), filepath.Join(dir, checkpoint.SingleFileName), tensors, nil); err != nil {
		t.Fatal(err)
	}
}

// TestOutputToDeviceAndStdout checks that --out - writes to stdout and that
// a device is written in place, not replaced by a regular file.
func TestOutputToDeviceAndStdout(t *testing.T) {
	model := tinyModelDir(t)
	stdout, stderr, st := runCLI(t, "logits", "--model", model, "--ids", "1,2", "--out", "-")
	if st != 0 || !strings.HasPrefix(stdout, "\x93NUMPY") || len(stdout) != 128+2*48*4 {
		t.Fatalf("--out -: status %d, %d bytes, %s", st, len(stdout), stderr)
	}
	null := filepath.Join(t.TempDir(), "null")
	if err := os.Symlink(os.DevNull, null); err != nil {
		t.Skip(err)
	}
	if _, stderr, st := runCLI(t, "logits", "--model", model, "--ids", "1,2", "--out", null); st != 0 {
		t.Fatalf("--out a device: status %d, %s", st, stderr)
	}
	if st, err := os.Stat(os.DevNull); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("%s is no longer a character device", os.DevNull)
	}
}

// TestTokenizeIntoLogits checks that tokenize's output is logits' input.
func TestTokenizeIntoLogits(t *testing.T) {
	ids, stderr, st := runCLIInput(t, "a b", "tokenize", "--tokenizer", "../../tokenizer/testdata/gpt2.json")
	if st != 0 {
		t.Fatalf("tokenize: %s", stderr)
	}
	model := tinyModelDir(t)
	// GPT-2's ids are past this model's vocabulary of 48; the error names
	// the first of them, which shows the ids were read.
	if _, stderr, _ := runCLIInput(t, ids, "logits", "--model", model, "--out", "-"); !strings.Contains(stderr, "position 0") {
		t.Errorf("logits did not read tokenize's output: %q (ids %q)", stderr, ids)
	}
	out := filepath.Join(t.TempDir(), "l.npy")
	if _, stderr, st := runCLIInput(t, "[3, 1,\n 4]\n", "logits", "--model", model, "--out", out); st != 0 {
		t.Fatalf("ids on stdin: %s", stderr)
	}
	if shape, _ := readNPY(t, out); shape != "3, 48" {
		t.Errorf("shape (%s)", shape)
	}
}

func TestCappedReader(t *testing.T) {
	if ids, err := parseIDs(cappedReader(strings.NewReader("1,2,3"), 5)); err != nil || len(ids) != 3 {
		t.Errorf("at the cap: %v, %v", ids, err)
	}
	if _, err := parseIDs(cappedReader(strings.NewReader("1,2,3,4"), 5)); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("over the cap: %v", err)
	}
}

func TestParseIDs(t *testing.T) {
	for in, want := range map[string][]int32{
		"0,12,7": {0, 12, 7}, "[0, 12, 7]\n": {0, 12, 7}, " 1 2\n3\t4 ": {1, 2, 3, 4}, "[5]": {5}, "2147483647": {1<<31 - 1},
	} {
		got, err := parseIDs(strings.NewReader(in))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseIDs(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "[]", "1,,2", ",1", "1,", "[1,2", "1]", "[1]2", "1 x", "-3", "2147483648", "1.5", "[[1]]"} {
		if got, err := parseIDs(strings.NewReader(in)); err == nil {
			t.Errorf("parseIDs(%q) = %v, want an error", in, got)
		}
	}
}

// TestDiskFull runs every command that writes files with a disk that fills
// up after 100 bytes: each must fail with one line naming the cause and
// leave the previous file as it was.
func TestDiskFull(t *testing.T) {
	model := tinyModelDir(t)
	corpus := writeFile(t, t.TempDir(), "c.txt", strings.Repeat("some text to learn from\n", 100))
	out := t.TempDir()
	for _, c := range []struct {
		name, target string // the file that must keep its contents
		args         []string
	}{
		{"logits", "l.npy", []string{"logits", "--model", model, "--ids", "1,2,3", "--out", "l.npy"}},
		{"init", "m/model.safetensors", []string{"init", "--arch", "mamba", "--config", filepath.Join(model, "config.json"), "--out", "m"}},
		{"convert model", "c/model.safetensors", []string{"convert", "--in", model, "--out", "c"}},
		{"convert file", "f.safetensors", []string{"convert", "--in", filepath.Join(model, checkpoint.SingleFileName), "--out", "f.safetensors"}},
		{"tokenizer train", "t.json", []string{"tokenizer", "train", "--vocab-size", "300", "--out", "t.json", corpus}},
	} {
		t.Run(c.name, func(t *testing.T) {
			target := filepath.Join(out, c.target)
			writeFile(t, out, c.target, "previous")
			args := slices.Clone(c.args)
			for i, a := range args {
				if i > 0 && args[i-1] == "--out" {
					args[i] = filepath.Join(out, a)
				}
			}
			restore := atomicfile.InjectFault(atomicfile.FullDisk(100))
			_, stderr, st := runCLI(t, args...)
			restore()
			if st != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "no space left") {
				t.Errorf("status %d, stderr %q", st, stderr)
			}
			if data, _ := os.ReadFile(target); string(data) != "previous" {
				t.Errorf("%s now holds %d bytes", c.target, len(data))
			}
			for _, f := range listFiles(t, out) {
				if strings.Contains(f, ".tmp-") {
					t.Errorf("temporary file left: %s", f)
				}
			}
		})
	}
}

// signalCases are long-running commands, each given a signal once its
// work has started.
func signalCases(t *testing.T) []struct {
	name string
	args []string
} {
	model := tinyModelDir(t)
	ids := filepath.Join(t.TempDir(), "ids.txt")
	var b strings.Builder
	for i := range 2000000 {
		fmt.Fprintf(&b, "%d ", i%48)
	}
	os.WriteFile(ids, []byte(b.String()), 0o644)
	root, err := goroot()
	if err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "big.json")
	os.WriteFile(big, []byte(`{"model_type": "mamba", "vocab_size": 50280, "hidden_size": 1024, "num_hidden_layers": 48}`), 0o644)
	return []struct {
		name string
		args []string
	}{
		{"logits", []string{"logits", "--model", model, "--ids-file", ids, "--mode", "recurrent", "--threads", "1", "--out", "OUT/l.npy"}},
		{"init", []string{"init", "--arch", "mamba", "--config", big, "--out", "OUT/m"}},
		// The default corpus, the Go source tree, takes over a minute.
		{"tokenizer train", []string{"tokenizer", "train", "--vocab-size", "32000", "--out", "OUT/t.json"}},
		// The default model writing a million tokens, and scoring the Go
		// source tree, take minutes.
		{"generate", []string{"generate", "--max-tokens", "1000000", "--ignore-eos", "--temperature", "1", "func"}},
		{"eval ppl", []string{"eval", "ppl", "--data", filepath.Join(root, "src"), "--ext", ".go"}},
		// Stopped while tokenizing, validating or tuning: in the last case
		// it saves the state of its last step.
		{"tune-state", []string{"tune-state", "--data", filepath.Join(root, "src", "regexp"), "--steps", "100000", "--threads", "1", "--out", "OUT/s.safetensors"}},
	}
}

// TestSignalsStopEveryCommand sends SIGINT and SIGTERM to long commands
// running as child processes: each must exit 130 or 143 promptly, print
// "interrupted", and leave no file in its output directory.
func TestSignalsStopEveryCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes for several seconds")
	}
	for _, c := range signalCases(t) {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			t.Run(c.name+"/"+sig.String(), func(t *testing.T) {
				out := t.TempDir()
				args := slices.Clone(c.args)
				for i := range args {
					args[i] = strings.Replace(args[i], "OUT", out, 1)
				}
				cmd, stderr := child(t, nil, args...)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(700 * time.Millisecond)
				sent := time.Now()
				cmd.Process.Signal(sig)
				err := waitAtMost(cmd, 10*time.Second)
				took := time.Since(sent)
				t.Logf("stopped %v after %s", sig, took)
				var exit *exec.ExitError
				want := 130
				if sig == syscall.SIGTERM {
					want = 143
				}
				if !errors.As(err, &exit) || exit.ExitCode() != want {
					t.Fatalf("exit %v, want status %d; stderr %q", err, want, stderr.String())
				}
				if got := stderr.String(); !strings.HasSuffix(got, "densessm: interrupted\n") {
					t.Errorf("stderr %q", got)
				}
				if files := listFiles(t, out); len(files) > 0 && !(c.name == "init" && slices.Equal(files, []string{"m"})) &&
					!(c.name == "tune-state" && slices.Equal(files, []string{"s.safetensors"})) {
					t.Errorf("left behind: %v", files)
				}
			})
		}
	}
}

// waitAtMost waits for cmd, killing it after limit (a hang).
func waitAtMost(cmd *exec.Cmd, limit time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("still running %s after the signal", limit)
	}
}

// TestKill9KeepsPreviousFile kills a child with SIGKILL while it writes its
// output: the previous file must be intact.
func TestKill9KeepsPreviousFile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	c := signalCases(t)[0] // logits over 2000000 ids, writing as it goes
	out := t.TempDir()
	target := writeFile(t, out, "l.npy", "previous")
	args := slices.Clone(c.args)
	for i := range args {
		args[i] = strings.Replace(args[i], "OUT", out, 1)
	}
	cmd, _ := child(t, nil, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !slices.ContainsFunc(listFiles(t, out), func(f string) bool { return strings.Contains(f, ".tmp-") }) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("no temporary file appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // mid-write
	cmd.Process.Kill()
	cmd.Wait()
	if data, _ := os.ReadFile(target); string(data) != "previous" {
		t.Errorf("after kill -9 the file holds %d bytes", len(data))
	}
}

// TestProgressOnlyOnTerminal checks that a progress bar is drawn when
// stderr is a terminal and that nothing is written otherwise.
func TestProgressOnlyOnTerminal(t *testing.T) {
	var w strings.Builder
	cmd := &cobra.Command{}
	cmd.SetErr(&w)
	if p := newProgress(cmd, 100, "work", false); p != nil {
		t.Fatal("a progress bar on a non-terminal")
	}
	old := isTerminal
	isTerminal = func(any) bool { return true }
	defer func() { isTerminal = old }()
	p := newProgress(cmd, 100, "work", false)
	p.set(50)
	p.done()
	if !strings.Contains(w.String(), "work") || !strings.Contains(w.String(), "50%") {
		t.Errorf("progress drew %q", w.String())
	}
}

// TestInspectEscapesNames checks that a tensor name holding escape codes,
// tabs or newlines cannot forge rows of inspect's table.
func TestInspectEscapesNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evil.safetensors")
	name := "a\x1b[31m\nforged.weight\tF32\t[1]"
	err := checkpoint.Write(context.Background(), path, []checkpoint.NamedTensor{
		{Name: name, DType: api.F32, Shape: api.Shape{1}, Data: make([]byte, 4)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, st := runCLI(t, "inspect", path)
	if st != 0 {
		t.Fatalf("inspect: %s", stderr)
	}
	if strings.Contains(out, "\x1b") || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"a\x1b[31m\nforged.weight\tF32\t[1]"`) {
		t.Errorf("inspect printed %q", out)
	}
}

// TestBenchDivergedLossKeepsResults checks that a training step whose loss
// is not finite still prints valid JSON with every other result.
func TestBenchDivergedLossKeepsResults(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(cfg, []byte(tinyMambaConfig), 0o644)
	out, stderr, st := runCLI(t, "bench", "model", "--arch", "mamba", "--config", cfg, "--prefill", "8", "--decode", "2",
		"--train-step", "--train-batch", "1", "--train-seq", "8", "--reps", "2", "--lr", "1e30")
	if st != 0 || !strings.Contains(stderr, "not finite") {
		t.Fatalf("status %d, stderr %q", st, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("invalid JSON %q: %v", out, err)
	}
	if rep["train_diverged"] != true || rep["prefill_tokens_per_s"] == nil || rep["decode_tokens_per_s"] == nil {
		t.Errorf("report %v", rep)
	}
}

// FuzzParseIDs checks that any input gives ids or an error, never a panic,
// and that ids printed back as a list read the same.
func FuzzParseIDs(f *testing.F) {
	for _, s := range []string{"0,12,7", "[0, 12, 7]\n", " 1 2\n3", "[]", "1,,2", "-1", "2147483648", "[1]2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := parseIDs(strings.NewReader(s))
		if err != nil {
			return
		}
		if len(ids) == 0 {
			t.Fatalf("no ids and no error for %q", s)
		}
		var b strings.Builder
		for i, id := range ids {
			if id < 0 {
				t.Fatalf("negative id %d from %q", id, s)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprint(&b, id)
		}
		again, err := parseIDs(strings.NewReader(b.String()))
		if err != nil || !slices.Equal(again, ids) {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, ids, b.String(), again, err)
		}
	})
}

// TestFlagUsagesHaveNoBackticks checks every flag's help text: pflag reads
// a `quoted` word as the flag's value name, so "see `densessm archs`"
// printed as "--arch densessm archs".
func TestFlagUsagesHaveNoBackticks(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage %q", c.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(io.Discard, io.Discard))
}
