package pybind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/defaultmodel"
	"github.com/densessm/densessm/internal/sysmem"
)

// Model is a loaded model with its tokenizer (nil for a model made with
// InitModel, or a directory without tokenizer.json). Calls on one Model
// run one at a time; calls from several Python threads wait their turn.
type Model struct {
	mu     sync.Mutex
	m      api.Model  // nil once closed
	tok    *Tokenizer // set once, never changed
	source string     // the directory, the default model's name or "init"

	// id is the identity stamped on the model's state files
	// (stateIdentity), computed the first time a state is saved or
	// loaded; guarded by mu.
	id *api.StateSnapshot
}

// buildOptions returns the options that build a model on backend with
// threads workers (0: every core), finding a plugin's backend when it is
// not built in.
func buildOptions(backend, weights string, threads int) (api.BuildOptions, error) {
	if threads < 0 {
		return api.BuildOptions{}, fmt.Errorf("threads=%d: want 0 (every core) or more: %w", threads, api.ErrConfig)
	}
	o := api.BuildOptions{Backend: backend, BackendOptions: api.BackendOptions{Threads: threads}}
	if weights != "" {
		var err error
		if o.Weights, err = api.ParseWeightDType(weights); err != nil {
			return api.BuildOptions{}, fmt.Errorf("weights=%q: want \"f32\", \"bf16\" or \"q8\": %w", weights, api.ErrConfig)
		}
	}
	if err := o.BackendOptions.Validate(); err != nil {
		return api.BuildOptions{}, fmt.Errorf("threads: %w", err)
	}
	if err := findBackend(o.BackendName()); err != nil {
		return api.BuildOptions{}, err
	}
	return o, nil
}

// checkFits refuses a model whose weights (stored as weights says:
// api.BuildOptions.Weights, Invalid for F32) and a parallel pass over
// tokens tokens would not fit in the memory available, before allocation.
func checkFits(cfg api.Config, weights api.DType, tokens int) error {
	est, ok := api.EstimateMemory(cfg)
	if !ok {
		return nil
	}
	avail, ok := sysmem.Available()
	need := est.InferenceBytesFor(weights, 1, tokens)
	if !ok || need <= avail {
		return nil
	}
	what := fmt.Sprintf("a %s model of %d parameters", cfg.ArchName(), est.Parameters)
	if weights != api.Invalid && weights != api.F32 {
		what += fmt.Sprintf(" with %s weights", api.WeightName(weights))
	}
	return fmt.Errorf("%s needs about %s, more than the %s available: %w",
		what, sysmem.Format(need), sysmem.Format(avail), api.ErrOutOfMemory)
}

// LoadModel loads the model directory dir (config.json, safetensors or
// PyTorch weights, and tokenizer.json when there is one) on backend with
// threads workers (0: every core), its weight matrices stored as weights
// says ("f32", "bf16", "q8"; "": as the file stores them). arch names the
// architecture when config.json does not; tokenizerPath, when not empty,
// replaces the directory's tokenizer.json.
func LoadModel(dir, arch, tokenizerPath, backend, weights string, threads int) (_ *Model, err error) {
	defer api.Recover(&err)
	if st, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory (want config.json beside the weights): %w", dir, api.ErrConfig)
	}
	build, err := buildOptions(backend, weights, threads)
	if err != nil {
		return nil, err
	}
	if arch != "" {
		if err := findArchitecture(arch); err != nil {
			return nil, err
		}
	} else if name := checkpoint.ModelType(dir); name != "" {
		findArchitecture(name) // a plugin's; LoadModel says what is wrong
	}
	tok, err := modelTokenizer(dir, tokenizerPath)
	if err != nil {
		return nil, err
	}
	m, err := checkpoint.LoadModel(context.Background(), dir, checkpoint.LoadOptions{
		Build:       build,
		Arch:        arch,
		CheckConfig: func(cfg api.Config, weights api.DType) error { return checkFits(cfg, weights, 512) },
	})
	if err != nil {
		return nil, err
	}
	return newModel(m, tok, dir)
}

// DefaultModel returns the model built into densessm (a small DenseMamba
// trained on Go source) with its tokenizer; weights as for LoadModel.
func DefaultModel(backend, weights string, threads int) (_ *Model, err error) {
	defer api.Recover(&err)
	build, err := buildOptions(backend, weights, threads)
	if err != nil {
		return nil, err
	}
	raw, err := defaultmodel.TokenizerJSON()
	if err != nil {
		return nil, err
	}
	tok, err := TokenizerFromJSON(string(raw))
	if err != nil {
		return nil, err
	}
	m, err := defaultmodel.Load(context.Background(), checkpoint.LoadOptions{Build: build})
	if err != nil {
		return nil, err
	}
	return newModel(m, tok, defaultmodel.Name)
}

// InitModel builds a new model of architecture arch with random weights
// from seed, stored as weights says (see LoadModel; low-precision weights
// do not train). configJSON holds config.json fields ("" or "{}": the
// architecture's small default configuration; fields not given keep
// their defaults where the architecture's parser allows it).
func InitModel(arch, configJSON, backend, weights string, seed int64, threads int) (_ *Model, err error) {
	defer api.Recover(&err)
	build, err := buildOptions(backend, weights, threads)
	if err != nil {
		return nil, err
	}
	if err := findArchitecture(arch); err != nil {
		return nil, err
	}
	a, err := api.ArchitectureOn(arch, build.BackendName())
	if err != nil {
		return nil, err
	}
	cfg := a.DefaultConfig()
	if configJSON != "" && configJSON != "{}" {
		if cfg, err = a.ParseConfig([]byte(configJSON)); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	if err := checkFits(cfg, build.WeightDType(), 512); err != nil {
		return nil, err
	}
	build.Seed = seed
	m, err := a.New(context.Background(), cfg, build)
	if err != nil {
		return nil, err
	}
	return newModel(m, nil, "init")
}

func newModel(m api.Model, tok *Tokenizer, source string) (*Model, error) {
	if tok != nil && tok.VocabSize() > m.Config().Vocab() {
		m.Close()
		return nil, fmt.Errorf("the tokenizer has %d tokens and the model only %d logits: is it the model's tokenizer? %w", tok.VocabSize(), m.Config().Vocab(), api.ErrConfig)
	}
	return &Model{m: m, tok: tok, source: source}, nil
}

// errClosed is the error of a call on a closed model or state.
var errClosed = errors.New("closed")

// use runs f with the model, one call at a time, or returns errClosed.
func (m *Model) use(f func(api.Model) error) (err error) {
	defer api.Recover(&err)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		return fmt.Errorf("model: %w", errClosed)
	}
	return f(m.m)
}

// modelInfo is what Info returns, as JSON.
type modelInfo struct {
	Arch      string          `json:"arch"`
	Source    string          `json:"source"`
	Vocab     int             `json:"vocab_size"`
	Params    int64           `json:"parameters"`
	Backend   string          `json:"backend"`
	Threads   int             `json:"threads"`
	Plugin    string          `json:"plugin,omitempty"`
	Modes     []string        `json:"modes"`
	Trainable bool            `json:"trainable"`
	Snapshots bool            `json:"snapshots"`
	Weights   string          `json:"weights"`
	Packed    bool            `json:"packed"`
	Config    json.RawMessage `json:"config"`
	Tokenizer bool            `json:"has_tokenizer"`
}

// Info returns, as JSON, the model's architecture, vocabulary size,
// parameter count, backend, forms and config.json fields.
func (m *Model) Info() (string, error) {
	var out []byte
	err := m.use(func(am api.Model) error {
		info := am.Info()
		cfg, err := json.Marshal(am.Config())
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		mi := modelInfo{
			Arch: info.Arch, Source: m.source, Vocab: am.Config().Vocab(), Backend: info.Backend,
			Threads: info.Threads, Plugin: info.Plugin, Trainable: info.Trainable, Snapshots: info.Snapshots, Packed: info.Packed, Weights: api.WeightName(info.Weights), Config: cfg,
			Modes: []string{}, Tokenizer: m.tok != nil,
		}
		for _, p := range am.Params() {
			mi.Params += int64(p.Shape.NumElements())
		}
		for _, mode := range info.Modes {
			mi.Modes = append(mi.Modes, mode.String())
		}
		out, err = json.Marshal(mi)
		return err
	})
	return string(out), err
}

// Tokenizer returns the model's tokenizer.
func (m *Model) Tokenizer() (*Tokenizer, error) {
	if m.tok == nil {
		return nil, fmt.Errorf("this model has no tokenizer (load one with Tokenizer.from_file): %w", api.ErrNotFound)
	}
	return m.tok, nil
}

// Save writes the model into dir as config.json and model.safetensors (in
// float32), and its tokenizer as tokenizer.json when it has one; each file
// is written atomically.
func (m *Model) Save(dir string) error {
	return m.use(func(am api.Model) error {
		if err := checkpoint.SaveModel(context.Background(), dir, am); err != nil {
			return err
		}
		if m.tok == nil {
			return nil
		}
		return m.tok.Save(filepath.Join(dir, "tokenizer.json"))
	})
}

// Close releases the model's memory (and its plugin's, for a plugin
// model). Later calls fail; closing twice does nothing. Arrays returned
// earlier stay valid: they own their memory.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		return nil
	}
	err := m.m.Close()
	m.m = nil
	return err
}

// Logits starts a job that runs the model over the token ids in the Arrow
// array at idsArray/idsSchema (int32 or int64, batch sequences of equal
// length laid end to end) in mode ("parallel", "chunkwise" with chunk
// tokens per block, 0 for the model's default, or "recurrent") and, when
// it succeeds, exports the float32 logits [batch, T, V] (flat, C order)
// into the Arrow structs at outArray/outSchema. The ids are read before
// Logits returns.
func (m *Model) Logits(idsArray, idsSchema int64, batch int, mode string, chunk int, outArray, outSchema int64) (*Job, error) {
	ids, err := importIDs(cArray{idsArray, idsSchema}, "ids")
	if err != nil {
		return nil, err
	}
	seqs, err := splitBatch(ids, batch)
	if err != nil {
		return nil, err
	}
	return m.logits(seqs, mode, chunk, cArray{outArray, outSchema})
}

// LogitsRagged is Logits for sequences of different lengths: the Arrow
// array holds them end to end, and lensJSON, a JSON list, each one's
// length (at least 1). The logits are [len(lens), T, V], T the longest,
// zero past each sequence's end, as the model's Forward gives them. Only a
// model whose api.Info.Packed is set takes sequences of different lengths;
// any other refuses them (api.ErrUnsupported).
func (m *Model) LogitsRagged(idsArray, idsSchema int64, lensJSON, mode string, chunk int, outArray, outSchema int64) (*Job, error) {
	ids, err := importIDs(cArray{idsArray, idsSchema}, "ids")
	if err != nil {
		return nil, err
	}
	seqs, err := splitLens(ids, lensJSON)
	if err != nil {
		return nil, err
	}
	return m.logits(seqs, mode, chunk, cArray{outArray, outSchema})
}

// logits starts the job of Logits and LogitsRagged.
func (m *Model) logits(seqs [][]int32, mode string, chunk int, out cArray) (*Job, error) {
	form := api.Form{Chunk: chunk}
	var err error
	if form.Mode, err = api.ParseMode(mode); err != nil {
		return nil, err
	}
	if chunk < 0 {
		return nil, fmt.Errorf("chunk=%d: want 0 (the model's default) or more: %w", chunk, api.ErrConfig)
	}
	if err := out.check("logits"); err != nil {
		return nil, err
	}
	return startJob(func(ctx context.Context, _ func(any)) (any, error) {
		return nil, m.use(func(am api.Model) error {
			if !am.Info().Supports(form.Mode) {
				return fmt.Errorf("mode %s: %s models have no such form: %w", form.Mode, am.Config().ArchName(), api.ErrUnsupported)
			}
			if err := checkRagged(am, seqs); err != nil {
				return err
			}
			buf, err := forward(ctx, am, seqs, form)
			if err != nil {
				return err
			}
			buf.export(out)
			return nil
		})
	}), nil
}

// checkRagged refuses sequences of different lengths for a model that does
// not take them (api.Info.Packed false).
func checkRagged(am api.Model, seqs [][]int32) error {
	if !api.Ragged(seqs) || am.Info().Packed {
		return nil
	}
	lens := make([]int, len(seqs))
	for b, s := range seqs {
		lens[b] = len(s)
	}
	return fmt.Errorf("sequences of different lengths %v: %s models do not take them (info[\"packed\"] is false): pad them, or run each length as a batch of its own: %w",
		lens, am.Config().ArchName(), api.ErrUnsupported)
}

// splitBatch cuts ids into batch sequences of equal length.
func splitBatch(ids []int32, batch int) ([][]int32, error) {
	if batch < 1 || len(ids) == 0 || len(ids)%batch != 0 {
		return nil, fmt.Errorf("%d ids in %d sequences: want at least one id and sequences of equal length: %w", len(ids), batch, api.ErrShape)
	}
	T := len(ids) / batch
	seqs := make([][]int32, batch)
	for b := range seqs {
		seqs[b] = ids[b*T : (b+1)*T : (b+1)*T]
	}
	return seqs, nil
}

// splitLens cuts ids into sequences of the lengths in lensJSON (a JSON
// list of counts, each at least 1, adding up to len(ids)).
func splitLens(ids []int32, lensJSON string) ([][]int32, error) {
	var lens []int
	if err := json.Unmarshal([]byte(lensJSON), &lens); err != nil {
		return nil, fmt.Errorf("lens %q: want a JSON list of sequence lengths: %w", lensJSON, api.ErrConfig)
	}
	if len(lens) == 0 {
		return nil, fmt.Errorf("lens: no sequences: %w", api.ErrShape)
	}
	seqs := make([][]int32, len(lens))
	at := 0
	for b, n := range lens {
		if n < 1 || n > len(ids)-at {
			return nil, fmt.Errorf("lens %v for %d ids: sequence %d: want lengths of at least 1 adding up to the ids: %w", lens, len(ids), b, api.ErrShape)
		}
		seqs[b] = ids[at : at+n : at+n]
		at += n
	}
	if at != len(ids) {
		return nil, fmt.Errorf("lens %v add up to %d, not the %d ids: %w", lens, at, len(ids), api.ErrShape)
	}
	return seqs, nil
}

// forward returns m's logits for seqs in form f in C memory, [B, T, V] with
// T the longest sequence (zero past each sequence's end). The parallel
// form of a CPU model that implements api.ForwardIntoModel writes the
// logits of sequences of equal length there directly; other models'
// logits, and those of sequences of different lengths, are copied once.
func forward(ctx context.Context, m api.Model, seqs [][]int32, f api.Form) (*cFloat32s, error) {
	B, T, V := len(seqs), 0, m.Config().Vocab()
	for _, s := range seqs {
		T = max(T, len(s))
	}
	if err := checkIDs(seqs, V); err != nil {
		return nil, err
	}
	if err := checkOutput(B*T, V); err != nil {
		return nil, err
	}
	buf := newCFloat32s(B * T * V)
	if fm, ok := m.(api.ForwardIntoModel); ok && f.Mode == api.Parallel && !api.Ragged(seqs) {
		if lm, ok := m.(api.LocalModel); ok {
			if b, ok := lm.Backend().(*cpu.Backend); ok {
				if err := fm.ForwardInto(ctx, b.WrapFloat32s(buf.data, B, T, V), seqs); err != nil {
					buf.release()
					return nil, err
				}
				return buf, nil
			}
		}
	}
	t, err := m.Forward(ctx, seqs, f)
	if err != nil {
		buf.release()
		return nil, err
	}
	t.Backend().Download(buf.bytes(), t)
	return buf, nil
}

// checkIDs refuses ids outside the vocabulary with a message naming the
// first one.
func checkIDs(seqs [][]int32, vocab int) error {
	for b, s := range seqs {
		for i, id := range s {
			if id < 0 || int(id) >= vocab {
				return fmt.Errorf("id %d (sequence %d, position %d): the model has %d tokens: %w", id, b, i, vocab, api.ErrOutOfRange)
			}
		}
	}
	return nil
}

// checkOutput refuses logits of rows × vocab float32s that would not fit
// in the memory available.
func checkOutput(rows, vocab int) error {
	need := int64(rows) * int64(vocab) * 4
	if avail, ok := sysmem.Available(); ok && need > avail {
		return fmt.Errorf("logits of %d × %d float32s need %s, more than the %s available: %w",
			rows, vocab, sysmem.Format(need), sysmem.Format(avail), api.ErrOutOfMemory)
	}
	return nil
}
