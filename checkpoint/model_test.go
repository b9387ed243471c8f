package checkpoint

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// testArchName is the architecture the tests of LoadModel register: a toy
// model of host tensors (see fakeModel).
const testArchName = "checkpoint-test"

func init() { api.RegisterArchitecture(fakeArch{}) }

// fakeConfig is the configuration of fakeModel, also its config.json.
type fakeConfig struct {
	ModelType string `json:"model_type"`
	Layers    int    `json:"num_hidden_layers"`
	Hidden    int    `json:"hidden_size"`
	VocabSize int    `json:"vocab_size"`
	Tied      bool   `json:"tie_word_embeddings"`
	// Ignores, when not nil, makes the model implement
	// IgnoredCheckpointNames, ignoring these names.
	Ignores []string `json:"ignores,omitempty"`
}

func (c *fakeConfig) ArchName() string { return testArchName }
func (c *fakeConfig) Vocab() int       { return c.VocabSize }
func (c *fakeConfig) Validate() error  { return nil }

type fakeArch struct{}

func (fakeArch) Name() string { return testArchName }
func (fakeArch) DefaultConfig() api.Config {
	return &fakeConfig{ModelType: testArchName, Layers: 2, Hidden: 4, VocabSize: 6}
}

func (fakeArch) ParseConfig(data []byte) (api.Config, error) {
	var c fakeConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%v: %w", err, api.ErrConfig)
	}
	return &c, nil
}

// New builds the model with parameter i holding seed+i, seed+i+1, ...
func (fakeArch) New(_ context.Context, cfg api.Config, opts api.BuildOptions) (api.Model, error) {
	c := cfg.(*fakeConfig)
	b, seed := opts.On, opts.Seed
	m := &fakeModel{cfg: c, b: b}
	add := func(name string, shape ...int) {
		t := b.Alloc(api.F32, shape...)
		v := make([]float32, api.Shape(shape).NumElements())
		for i := range v {
			v[i] = float32(seed) + float32(len(m.params)) + float32(i)/8
		}
		raw := make([]byte, 4*len(v))
		if err := api.EncodeFloat32(raw, api.F32, v); err != nil {
			return
		}
		b.Upload(t, raw)
		m.params = append(m.params, api.Parameter{Name: name, Value: t})
	}
	add("embed.weight", c.VocabSize, c.Hidden)
	for i := range c.Layers {
		add(fmt.Sprintf("layers.%d.weight", i), c.Hidden, c.Hidden)
	}
	if !c.Tied {
		add("lm_head.weight", c.VocabSize, c.Hidden)
	}
	if c.Ignores != nil {
		return &ignoringModel{m}, nil
	}
	return m, nil
}

// fakeModel has parameters only; the embedded nil Model makes any other
// call panic.
type fakeModel struct {
	api.Model
	cfg    *fakeConfig
	b      api.Backend
	params []api.Parameter
}

func (m *fakeModel) Config() api.Config          { return m.cfg }
func (m *fakeModel) Backend() api.Backend        { return m.b }
func (m *fakeModel) Parameters() []api.Parameter { return append([]api.Parameter(nil), m.params...) }
func (m *fakeModel) ReadParams(ctx context.Context, names []string) ([]api.HostTensor, error) {
	return api.ReadParameters(ctx, m.params, names)
}

// CheckpointAliases gives embed.weight the other name embedding.weight.
func (m *fakeModel) CheckpointAliases(name string) []string {
	if name == "embed.weight" {
		return []string{"embedding.weight"}
	}
	return nil
}

// ignoringModel is a fakeModel that implements IgnoredCheckpointNames.
type ignoringModel struct{ *fakeModel }

func (m *ignoringModel) IgnoresCheckpointTensor(name string) bool {
	for _, n := range m.cfg.Ignores {
		if n == name {
			return true
		}
	}
	return false
}

// newFake builds a fake model of cfg on a host backend.
func newFake(t testing.TB, cfg fakeConfig, seed int64) api.LocalModel {
	t.Helper()
	cfg.ModelType = testArchName
	m, err := fakeArch{}.New(t.Context(), &cfg, api.BuildOptions{On: &hostBackend{}, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return m.(api.LocalModel)
}

// saveFake saves a fake model of cfg into a new directory, then writes
// config.json for loadCfg over its config (nil: keep it), and returns the
// directory.
func saveFake(t testing.TB, cfg fakeConfig, loadCfg *fakeConfig) string {
	t.Helper()
	dir := t.TempDir()
	if err := SaveModel(context.Background(), dir, newFake(t, cfg, 1)); err != nil {
		t.Fatal(err)
	}
	if loadCfg != nil {
		writeConfig(t, dir, *loadCfg)
	}
	return dir
}

// writeConfig writes cfg as dir's config.json.
func writeConfig(t testing.TB, dir string, cfg fakeConfig) {
	t.Helper()
	cfg.ModelType = testArchName
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFileName), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeWeights writes tensors as dir's model.safetensors.
func writeWeights(t testing.TB, dir string, tensors []NamedTensor) {
	t.Helper()
	if err := Write(context.Background(), filepath.Join(dir, SingleFileName), tensors, nil); err != nil {
		t.Fatal(err)
	}
}

// fakeTensors returns the parameters of a fake model of cfg as tensors.
func fakeTensors(t testing.TB, cfg fakeConfig) []NamedTensor {
	t.Helper()
	tensors, err := FromParameters(newFake(t, cfg, 1).Parameters(), api.F32)
	if err != nil {
		t.Fatal(err)
	}
	return tensors
}

// sameParams checks that every parameter of got holds the values of the
// parameter of the same name of want, bit for bit.
func sameParams(t *testing.T, got, want api.Model) {
	t.Helper()
	w := map[string][]byte{}
	for _, p := range want.(api.LocalModel).Parameters() {
		w[p.Name] = p.Value.(*hostTensor).data
	}
	for _, p := range got.(api.LocalModel).Parameters() {
		if data, ok := w[p.Name]; !ok || string(p.Value.(*hostTensor).data) != string(data) {
			t.Errorf("parameter %s differs", p.Name)
		}
	}
}

// oneLine fails the test when err's message spans several lines.
func oneLine(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("error of several lines:\n%v", err)
	}
}

func TestLoadModelRoundTrip(t *testing.T) {
	cfg := fakeConfig{Layers: 3, Hidden: 600, VocabSize: 5000}
	dir := saveFake(t, cfg, nil)
	var calls [][2]int64
	m, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}, Progress: func(done, total int64) {
		calls = append(calls, [2]int64{done, total})
	}})
	if err != nil {
		t.Fatal(err)
	}
	sameParams(t, m, newFake(t, cfg, 1))

	var total int64
	for _, p := range m.(api.LocalModel).Parameters() {
		total += int64(4 * p.Value.Shape().NumElements())
	}
	if len(calls) < 3 || calls[0] != [2]int64{0, total} || calls[len(calls)-1] != [2]int64{total, total} {
		t.Fatalf("progress calls %v; want from 0 to %d", calls, total)
	}
	for i := 1; i < len(calls); i++ {
		step := calls[i][0] - calls[i-1][0]
		if calls[i][1] != total || step <= 0 || step < progressStep && i != len(calls)-1 {
			t.Errorf("progress call %d of %v: steps must be of at least %d bytes", i, calls, progressStep)
		}
	}
}

// TestLoadModelFewerLayers is the config that silently dropped layers: the
// weights have 5 layers and config.json says 1.
func TestLoadModelFewerLayers(t *testing.T) {
	saved := fakeConfig{Layers: 5, Hidden: 2, VocabSize: 3}
	short := saved
	short.Layers = 1
	dir := saveFake(t, saved, &short)
	_, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
	want := `4 checkpoint tensors are not parameters of the model: "layers.1.weight", "layers.2.weight", "layers.3.weight" and 1 more (does config.json's num_hidden_layers match the weights? pass AllowExtra, or --allow-extra on the command line, to ignore them)`
	if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
		t.Errorf("config with fewer layers: %v\nwant ErrConfig saying %s", err, want)
	}
	oneLine(t, err)

	m, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}, AllowExtra: true})
	if err != nil {
		t.Fatalf("AllowExtra: %v", err)
	}
	sameParams(t, m, newFake(t, saved, 1))
}

func TestLoadModelMismatches(t *testing.T) {
	base := fakeConfig{Layers: 2, Hidden: 2, VocabSize: 3}
	more := base
	more.Layers = 6
	wider := base
	wider.Hidden = 3
	untied := base
	untied.Tied = false
	tied := base
	tied.Tied = true
	for _, tc := range []struct {
		name        string
		saved, load fakeConfig
		sentinels   []error
		texts       []string
	}{
		{"more layers", base, more, []error{api.ErrNotFound},
			[]string{`4 parameters have no tensor in the checkpoint: "layers.2.weight", "layers.3.weight", "layers.4.weight" and 1 more (does config.json's num_hidden_layers`}},
		{"wider", base, wider, []error{api.ErrShape},
			[]string{`4 tensors have the wrong shape: "embed.weight" is F32[3 2], the parameter F32[3 3]; "layers.0.weight" is F32[2 2], the parameter F32[3 3]; "layers.1.weight" is F32[2 2], the parameter F32[3 3] and 1 more (do config.json's sizes`}},
		{"untied weights, tied config", untied, tied, []error{api.ErrConfig},
			[]string{`1 checkpoint tensor is not a parameter`, `"lm_head.weight"`}},
		{"tied weights, untied config, fewer layers", tied, fakeConfig{Layers: 1, Hidden: 2, VocabSize: 3}, []error{api.ErrConfig, api.ErrNotFound},
			[]string{`1 checkpoint tensor is not a parameter of the model: "layers.1.weight"`, `; and 1 parameter has no tensor in the checkpoint: "lm_head.weight"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := saveFake(t, tc.saved, &tc.load)
			before, _ := os.ReadFile(filepath.Join(dir, SingleFileName))
			_, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}, AllowExtra: false})
			for _, s := range tc.sentinels {
				if !errors.Is(err, s) {
					t.Errorf("%v\ndoes not wrap %v", err, s)
				}
			}
			for _, text := range tc.texts {
				if err == nil || !strings.Contains(err.Error(), text) {
					t.Errorf("%v\ndoes not say %s", err, text)
				}
			}
			oneLine(t, err)
			if after, _ := os.ReadFile(filepath.Join(dir, SingleFileName)); string(after) != string(before) {
				t.Error("loading changed the file")
			}
		})
	}
}

// TestLoadModelExpectedTensors loads checkpoints whose tensors that are not
// parameters are expected: parameter aliases, well-known buffers, names the
// model ignores, and tied copies.
func TestLoadModelExpectedTensors(t *testing.T) {
	cfg := fakeConfig{Layers: 2, Hidden: 2, VocabSize: 3, Tied: true}
	buffers := []NamedTensor{
		{Name: "retnet_rel_pos.angle", DType: api.F32, Shape: api.Shape{2}, Data: make([]byte, 8)},
		{Name: "model.retnet_rel_pos.decay", DType: api.F32, Shape: api.Shape{1}, Data: make([]byte, 4)},
	}
	t.Run("alias and buffers", func(t *testing.T) {
		dir := saveFake(t, cfg, nil)
		tensors := fakeTensors(t, cfg)
		alias := tensors[0]
		alias.Name = "embedding.weight"
		alias.Data = make([]byte, len(alias.Data)) // not even equal: an old name of the parameter
		writeWeights(t, dir, append(append(tensors, alias), buffers...))
		m, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
		if err != nil {
			t.Fatal(err)
		}
		sameParams(t, m, newFake(t, cfg, 1))
	})
	t.Run("model's own ignored names replace the defaults", func(t *testing.T) {
		own := cfg
		own.Ignores = []string{"rotary.inv_freq"}
		dir := saveFake(t, own, nil)
		extra := NamedTensor{Name: "rotary.inv_freq", DType: api.F32, Shape: api.Shape{1}, Data: make([]byte, 4)}
		writeWeights(t, dir, append(fakeTensors(t, cfg), extra))
		if _, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}}); err != nil {
			t.Fatal(err)
		}
		writeWeights(t, dir, append(append(fakeTensors(t, cfg), extra), buffers...))
		_, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
		if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), `2 checkpoint tensors are not parameters of the model: "model.retnet_rel_pos.decay", "retnet_rel_pos.angle"`) {
			t.Errorf("buffers the model does not ignore: %v", err)
		}
	})
	t.Run("tied copy in a PyTorch file", func(t *testing.T) {
		// torch.save of a model whose lm_head is tied to the embeddings:
		// two names, one storage.
		embed := tensorSpec{name: "embed.weight", storageType: "FloatStorage", key: "0", numel: 6, shape: []int32{3, 2}, stride: []int32{2, 1}}
		head := embed
		head.name = "lm_head.weight"
		layer0 := tensorSpec{name: "layers.0.weight", storageType: "FloatStorage", key: "1", numel: 4, shape: []int32{2, 2}, stride: []int32{2, 1}}
		layer1 := layer0
		layer1.name, layer1.key = "layers.1.weight", "2"
		// A view of the same bytes with another shape is not a tied copy.
		flat := tensorSpec{name: "flat", storageType: "FloatStorage", key: "0", numel: 6, shape: []int32{6}, stride: []int32{1}}
		build := func(specs ...tensorSpec) string {
			dir := t.TempDir()
			data := torchZip(t, zipRecord{name: "archive/data.pkl", data: stateDict(specs...)},
				zipRecord{name: "archive/data/0", data: f32Bytes(6)},
				zipRecord{name: "archive/data/1", data: f32Bytes(4)},
				zipRecord{name: "archive/data/2", data: f32Bytes(4)})
			if err := os.WriteFile(filepath.Join(dir, PyTorchFileName), data, 0o644); err != nil {
				t.Fatal(err)
			}
			writeConfig(t, dir, cfg)
			return dir
		}
		if _, err := LoadModel(t.Context(), build(embed, layer0, layer1, head), LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}}); err != nil {
			t.Fatal(err)
		}
		_, err := LoadModel(t.Context(), build(embed, layer0, layer1, head, flat), LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
		if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), `1 checkpoint tensor is not a parameter of the model: "flat"`) {
			t.Errorf("reshaped view: %v", err)
		}
	})
	t.Run("equal but separate copy", func(t *testing.T) {
		// In safetensors tensors never share bytes: an lm_head equal to the
		// embeddings is still a tensor the tied model does not take.
		dir := saveFake(t, cfg, nil)
		tensors := fakeTensors(t, cfg)
		head := tensors[0]
		head.Name = "lm_head.weight"
		writeWeights(t, dir, append(tensors, head))
		_, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
		if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), `"lm_head.weight"`) {
			t.Errorf("separate lm_head with a tied config: %v", err)
		}
	})
}

func TestDefaultIgnoresCheckpointTensor(t *testing.T) {
	for name, want := range map[string]bool{
		"retnet_rel_pos.angle": true, "retnet_rel_pos.decay": true,
		"model.retnet_rel_pos.angle": true, "decoder.retnet_rel_pos.decay": true,
		"xretnet_rel_pos.angle": false, "retnet_rel_pos.angle.weight": false, "retnet_rel_pos": false,
		"lm_head.weight": false, "layers.1.weight": false, "": false,
	} {
		if got := DefaultIgnoresCheckpointTensor(name); got != want {
			t.Errorf("DefaultIgnoresCheckpointTensor(%q) = %v", name, got)
		}
	}
}

// TestLoadModelNonFinite loads weights holding NaN or infinity, stored as
// F32, F16, BF16 and F64 (whose finite values may overflow float32).
func TestLoadModelNonFinite(t *testing.T) {
	cfg := fakeConfig{Layers: 2, Hidden: 2, VocabSize: 3}
	f16 := func(bits ...uint16) []byte {
		var b []byte
		for _, v := range bits {
			b = binary.LittleEndian.AppendUint16(b, v)
		}
		return b
	}
	f64 := func(vals ...float64) []byte {
		var b []byte
		for _, v := range vals {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		return b
	}
	f32 := func(vals ...float32) []byte {
		b := make([]byte, 4*len(vals))
		if err := api.EncodeFloat32(b, api.F32, vals); err != nil {
			t.Fatal(err)
		}
		return b
	}
	nan32 := float32(math.NaN())
	for _, tc := range []struct {
		name  string
		layer NamedTensor
		text  string
	}{
		{"F32", NamedTensor{DType: api.F32, Data: f32(1, nan32, float32(math.Inf(-1)), nan32)}, "3 of its 4 F32 values are not finite (2 NaN, 1 infinite)"},
		{"F16", NamedTensor{DType: api.F16, Data: f16(0x3c00, 0x7c00, 0xfc00, 0x0001)}, "2 of its 4 F16 values as F32 are not finite (2 infinite)"},
		{"BF16", NamedTensor{DType: api.BF16, Data: f16(0x3f80, 0x7fc1, 0x0000, 0x8000)}, "1 of its 4 BF16 values as F32 are not finite (1 NaN)"},
		{"F64 overflowing float32", NamedTensor{DType: api.F64, Data: f64(1, 1e300, -1e39, 3)}, "2 of its 4 F64 values as F32 are not finite (2 infinite)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := saveFake(t, cfg, nil)
			tensors := fakeTensors(t, cfg)
			for i := range tensors {
				if tensors[i].Name == "layers.1.weight" {
					tensors[i].DType, tensors[i].Data = tc.layer.DType, tc.layer.Data
				}
			}
			writeWeights(t, dir, tensors)
			_, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
			if !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), `tensor "layers.1.weight": `+tc.text) ||
				!strings.Contains(err.Error(), "AllowNonFinite") {
				t.Errorf("got %v\nwant ErrCorrupt saying %s", err, tc.text)
			}
			oneLine(t, err)
			m, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}, AllowNonFinite: true})
			if err != nil {
				t.Fatalf("AllowNonFinite: %v", err)
			}
			got := hostFloat32s(m.(api.LocalModel).Parameters()[2].Value)
			nonFinite := 0
			for _, v := range got {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					nonFinite++
				}
			}
			if nonFinite == 0 {
				t.Errorf("AllowNonFinite loaded %v", got)
			}
		})
	}
}

func TestLoadModelCancelled(t *testing.T) {
	dir := saveFake(t, fakeConfig{Layers: 2, Hidden: 2, VocabSize: 3}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := LoadModel(ctx, dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	// Cancelled while loading, from the progress callback.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	_, err := LoadModel(ctx, dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}, Progress: func(done, total int64) {
		calls++
		cancel()
	}})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("cancelled at the first progress call: %v after %d calls", err, calls)
	}
}

func TestLoadModelCheckConfig(t *testing.T) {
	dir := saveFake(t, fakeConfig{Layers: 2, Hidden: 2, VocabSize: 3}, nil)
	tooBig := errors.New("too big")
	var seen api.Config
	var seenWeights api.DType
	_, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}, CheckConfig: func(cfg api.Config, weights api.DType) error {
		seen, seenWeights = cfg, weights
		return tooBig
	}})
	if !errors.Is(err, tooBig) || !strings.Contains(err.Error(), dir) {
		t.Errorf("CheckConfig's error: %v", err)
	}
	if c, ok := seen.(*fakeConfig); !ok || c.Layers != 2 || seenWeights != api.F32 {
		t.Errorf("CheckConfig saw %+v with %s weights", seen, seenWeights)
	}
}

// countdownCtx is a context whose Err turns to context.Canceled at its n-th
// call: a cancellation in the middle of a write, at a known point.
type countdownCtx struct {
	context.Context
	n int
}

func (c *countdownCtx) Err() error {
	if c.n--; c.n <= 0 {
		return context.Canceled
	}
	return nil
}

func TestWriteCancelled(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := NamedTensor{Name: "big", DType: api.U8, Shape: api.Shape{3 * writeChunk}, Data: make([]byte, 3*writeChunk)}
	for _, n := range []int{1, 2, 3, 4} {
		ctx := &countdownCtx{Context: t.Context(), n: n}
		err := Write(ctx, path, []NamedTensor{big}, nil)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), path) {
			t.Errorf("cancelled at check %d: %v", n, err)
		}
		if got, _ := os.ReadFile(path); string(got) != "old" {
			t.Fatalf("cancelled at check %d: the file holds %d bytes", n, len(got))
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("cancelled at check %d: the directory holds %v", n, entries)
		}
	}
	// The check count: one before writing, one per chunk, one at the end.
	if err := Write(&countdownCtx{Context: t.Context(), n: 6}, path, []NamedTensor{big}, nil); err != nil {
		t.Fatalf("with 5 checks to spare: %v", err)
	}
}

func TestSaveModelCancelled(t *testing.T) {
	dir := saveFake(t, fakeConfig{Layers: 1, Hidden: 2, VocabSize: 3}, nil)
	files := map[string]string{}
	for _, name := range []string{ConfigFileName, SingleFileName} {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		files[name] = string(data)
	}
	m := newFake(t, fakeConfig{Layers: 4, Hidden: 2, VocabSize: 3}, 7)
	// ctx is checked once at the start, once per parameter (6), then by
	// Write once at the start, once per tensor's single chunk and once at
	// the end: 15 checks in all.
	for n := 1; n <= 15; n++ {
		err := SaveModel(&countdownCtx{Context: t.Context(), n: n}, dir, m)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled at check %d: %v", n, err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 2 {
			t.Errorf("cancelled at check %d: the directory holds %v", n, entries)
		}
		for name, want := range files {
			if got, _ := os.ReadFile(filepath.Join(dir, name)); string(got) != want {
				t.Errorf("cancelled at check %d: %s changed", n, name)
			}
		}
	}
	if err := SaveModel(&countdownCtx{Context: t.Context(), n: 16}, dir, m); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
	if err != nil {
		t.Fatal(err)
	}
	sameParams(t, loaded, m)
}

// TestLoadModelBytes loads a model held in memory and gets what LoadModel
// gets from the same files; corrupt weights are an error naming the model.
func TestLoadModelBytes(t *testing.T) {
	cfg := fakeConfig{Layers: 2, Hidden: 8, VocabSize: 10}
	dir := saveFake(t, cfg, nil)
	cfgJSON, err := os.ReadFile(filepath.Join(dir, ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	weights, err := os.ReadFile(filepath.Join(dir, SingleFileName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModelBytes(t.Context(), "in-memory", cfgJSON, weights, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
	if err != nil {
		t.Fatal(err)
	}
	sameParams(t, m, newFake(t, cfg, 1))
	if _, err := LoadModelBytes(t.Context(), "in-memory", cfgJSON, weights[:20], LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}}); !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), "in-memory") {
		t.Fatalf("truncated weights: %v", err)
	}
	for _, bad := range []string{"[1]", "null", `{"model_type": "checkpoint-test"} {}`} {
		if _, err := LoadModelBytes(t.Context(), "in-memory", []byte(bad), weights, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}}); !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), "in-memory: config.json") {
			t.Errorf("config %s: %v", bad, err)
		}
	}
}

// TestSaveModelAsBF16 stores the weights in bfloat16: half the bytes, and
// every value loads back as its bfloat16 rounding.
func TestSaveModelAsBF16(t *testing.T) {
	cfg := fakeConfig{Layers: 2, Hidden: 8, VocabSize: 10}
	m := newFake(t, cfg, 1)
	dir := t.TempDir()
	if err := SaveModelAs(t.Context(), dir, m, api.BF16); err != nil {
		t.Fatal(err)
	}
	ck, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	for _, ti := range ck.Tensors() {
		if ti.DType != api.BF16 {
			t.Fatalf("%s stored as %s", ti.Name, ti.DType)
		}
	}
	back, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Parameters() {
		want := api.Float32s(p.Value)
		got := api.Float32s(back.(api.LocalModel).Parameters()[i].Value)
		for j, v := range want {
			raw := make([]byte, 2)
			if err := api.EncodeFloat32(raw, api.BF16, []float32{v}); err != nil {
				t.Fatal(err)
			}
			r := make([]float32, 1)
			if err := api.DecodeFloat32(r, api.BF16, raw); err != nil {
				t.Fatal(err)
			}
			if got[j] != r[0] {
				t.Fatalf("%s[%d] = %g, want bf16(%g) = %g", p.Name, j, got[j], v, r[0])
			}
		}
	}
}

// TestLoadModelWidensOnBackend loads F16 and BF16 weights holding every
// 16-bit pattern (zeros, subnormals, infinities, NaNs of every payload)
// into F32 parameters, on the CPU backend and on the host test backend.
// The values must equal, bit for bit, what widening on the host gives;
// the backend must receive the stored half bytes only, into one temporary
// tensor per shape, freed at the end.
func TestLoadModelWidensOnBackend(t *testing.T) {
	cfg := fakeConfig{Layers: 2, Hidden: 256, VocabSize: 256, Tied: true}
	every := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(every[2*i:], uint16(i))
	}
	for _, storage := range []api.DType{api.F16, api.BF16} {
		t.Run(storage.String(), func(t *testing.T) {
			dir := saveFake(t, cfg, nil)
			tensors := fakeTensors(t, cfg)
			var stored int64
			for i := range tensors {
				tensors[i].DType, tensors[i].Data = storage, every
				stored += int64(len(every))
			}
			writeWeights(t, dir, tensors)
			var conv converter
			want, err := conv.convert(api.F32, storage, every) // the host's widening
			if err != nil {
				t.Fatal(err)
			}
			host := &hostBackend{}
			for _, b := range []api.Backend{cpu.New(api.BackendOptions{Threads: 2}), host} {
				m, err := LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: b}, AllowNonFinite: true,
					Progress: func(done, _ int64) {
						if done == 0 {
							host.uploaded = 0 // what the model's New uploaded
						}
					}})
				if err != nil {
					t.Fatalf("%s: %v", b.Name(), err)
				}
				for _, p := range m.(api.LocalModel).Parameters() {
					got := make([]byte, len(want))
					b.Download(got, p.Value)
					if p.Value.DType() != api.F32 || string(got) != string(want) {
						t.Errorf("%s: %s: %s values differ from the host's widening", b.Name(), p.Name, p.Value.DType())
					}
				}
			}
			if host.uploaded != stored || host.frees != 1 {
				t.Errorf("host backend: %d bytes uploaded, want the %d stored; %d temporary tensors freed, want 1", host.uploaded, stored, host.frees)
			}
			_, err = LoadModel(t.Context(), dir, LoadOptions{Build: api.BuildOptions{On: &hostBackend{}}})
			nonFinite := map[api.DType]string{api.F16: "2046 NaN, 2 infinite", api.BF16: "254 NaN, 2 infinite"}[storage]
			if !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), "values as F32 are not finite ("+nonFinite+")") {
				t.Errorf("non-finite halves: %v, want ErrCorrupt counting %s", err, nonFinite)
			}
		})
	}
}
