package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/densessm/densessm/api"
)

// experiment is the whole plan, read from config.yaml (or quick.yaml).
type experiment struct {
	// Base is an experiment file whose keys this one's replace.
	Base string `yaml:"base"`
	// Tokenizer is the tokenizer.json every run uses (relative paths are
	// from the repository root, where the program runs).
	Tokenizer string `yaml:"tokenizer"`
	// Task is the multiple-choice task of `densessm eval mc`.
	Task string `yaml:"task"`
	// Data and Ext are densessm train's --data and --ext (empty: the .go
	// files of GOROOT/src). --data on the command line replaces Data.
	Data []string `yaml:"data"`
	Ext  []string `yaml:"ext"`
	// Seeds are the seeds of every row (initial weights and data order).
	Seeds []uint64 `yaml:"seeds"`
	// Threads is each run's --threads; runs go --jobs at a time.
	Threads int `yaml:"threads"`
	// Train holds densessm train's flags shared by every run, by name.
	Train map[string]any `yaml:"train"`
	// EvalContext is the window (and stride) of the held-out perplexity,
	// `densessm eval ppl --mode parallel`: windows of this many tokens, each
	// from an empty state, as the models were trained.
	EvalContext int `yaml:"eval-context"`
	// Bench sets the speed and memory measurements, one model at a time.
	Bench benchSettings `yaml:"bench"`
	// Sizes are the model sizes; each gives every family's base config.
	Sizes []size `yaml:"sizes"`
	// Rows are the compared models.
	Rows []row `yaml:"rows"`
	// Groups are the tables and plots of the report, each over some rows.
	Groups []group `yaml:"groups"`
	// Tolerance is the largest relative difference of a row's parameter
	// count from its group's first row (0.02: 2%).
	Tolerance float64 `yaml:"param-tolerance"`
}

// benchSettings are the flags of `densessm bench model`.
type benchSettings struct {
	Decode     int `yaml:"decode"`      // timed decode steps
	TrainBatch int `yaml:"train-batch"` // sequences of the timed training step
	TrainSeq   int `yaml:"train-seq"`   // tokens per sequence of the training step
	Reps       int `yaml:"reps"`        // timed training steps (median)
}

// size is one model size: the config.json fields of each family.
type size struct {
	Name   string                    `yaml:"name"`
	Models map[string]map[string]any `yaml:"models"`
}

// row is one compared model: an architecture, config fields over its
// family's base config, and how its width is adjusted to match the
// parameter count of another row.
type row struct {
	Name   string         `yaml:"name"`
	Family string         `yaml:"family"` // key of size.Models
	Arch   string         `yaml:"arch"`
	Model  map[string]any `yaml:"model"` // fields over the family's (objects replace whole)
	// Sizes limits the row to some sizes (empty: every size).
	Sizes []string `yaml:"sizes"`
	// Match widens or narrows the row to the parameter count of another.
	Match *match `yaml:"match"`
	// Note describes the row in the report.
	Note string `yaml:"note"`
}

// match names the integer config field that is moved, in multiples of
// Step, until the row's parameter count is closest to row To's.
type match struct {
	To   string `yaml:"to"`
	Knob string `yaml:"knob"`
	Step int    `yaml:"step"`
}

// group is one table (and loss-curve plot) of the report: rows side by
// side, the first the reference the others are compared with.
type group struct {
	Name  string   `yaml:"name"`
	Title string   `yaml:"title"`
	Rows  []string `yaml:"rows"`
	Sizes []string `yaml:"sizes"` // empty: every size
}

// readExperiment reads and checks an experiment file. A file with a
// "base" key names another (relative to its own folder) whose keys it
// replaces, each top-level key as a whole.
func readExperiment(path string) (*experiment, error) {
	e, err := decodeExperiment(path)
	if err != nil {
		return nil, err
	}
	if e.Base != "" {
		base, err := decodeExperiment(filepath.Join(filepath.Dir(path), e.Base))
		if err != nil {
			return nil, err
		}
		var keys map[string]any
		raw, _ := os.ReadFile(path)
		if err := yaml.Unmarshal(raw, &keys); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		bv, ev := reflect.ValueOf(base).Elem(), reflect.ValueOf(e).Elem()
		for i := range ev.NumField() {
			if tag := ev.Type().Field(i).Tag.Get("yaml"); keys[tag] != nil {
				bv.Field(i).Set(ev.Field(i))
			}
		}
		base.Base, e = "", base
	}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// decodeExperiment decodes an experiment file, refusing unknown keys.
func decodeExperiment(path string) (*experiment, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var e experiment
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &e, nil
}

func (e *experiment) check() error {
	switch {
	case e.Tokenizer == "" || e.Task == "":
		return errors.New("tokenizer and task are required")
	case len(e.Seeds) == 0 || len(e.Sizes) == 0 || len(e.Rows) == 0:
		return errors.New("seeds, sizes and rows are required")
	case e.Threads < 1:
		return errors.New("threads must be at least 1")
	case e.EvalContext < 1:
		return errors.New("eval-context must be at least 1")
	case e.Tolerance <= 0:
		return errors.New("param-tolerance must be > 0")
	}
	for _, k := range []string{"arch", "model", "model-config", "out", "seed", "threads", "tokenizer", "data", "ext", "resume", "config"} {
		if _, ok := e.Train[k]; ok {
			return fmt.Errorf("train: %q is set by the experiment, not in train", k)
		}
	}
	rows := map[string]*row{}
	for i := range e.Rows {
		r := &e.Rows[i]
		if rows[r.Name] != nil || r.Name == "" {
			return fmt.Errorf("row %q: empty or repeated name", r.Name)
		}
		rows[r.Name] = r
		for _, s := range e.Sizes {
			if _, ok := s.Models[r.Family]; !ok && r.inSize(s.Name) {
				return fmt.Errorf("row %s: size %s has no family %q", r.Name, s.Name, r.Family)
			}
		}
	}
	for _, r := range e.Rows {
		if r.Match == nil {
			continue
		}
		if t := rows[r.Match.To]; t == nil || t.Match != nil || r.Match.Knob == "" || r.Match.Step < 1 {
			return fmt.Errorf("row %s: match needs an unmatched row to, a knob and a step >= 1", r.Name)
		}
	}
	for _, g := range e.Groups {
		for _, n := range g.Rows {
			if rows[n] == nil {
				return fmt.Errorf("group %s: no row %q", g.Name, n)
			}
		}
	}
	return nil
}

func (r *row) inSize(s string) bool { return len(r.Sizes) == 0 || slices.Contains(r.Sizes, s) }

func (g *group) inSize(s string) bool { return len(g.Sizes) == 0 || slices.Contains(g.Sizes, s) }

func (e *experiment) row(name string) *row {
	for i := range e.Rows {
		if e.Rows[i].Name == name {
			return &e.Rows[i]
		}
	}
	return nil
}

// baseModel is row r's config.json fields at size s before matching.
func (e *experiment) baseModel(r *row, s *size, vocab int) map[string]any {
	m := maps.Clone(s.Models[r.Family])
	maps.Copy(m, r.Model)
	m["model_type"] = r.Arch
	m["vocab_size"] = vocab
	return m
}

// shape is a row's model at one size after matching.
type shape struct {
	Model map[string]any `json:"model"`
	// Parameters counts every parameter; Trained those that a training
	// step changes (DenseRetNet carries link weights at every layer even
	// where nothing is linked: at m = 0 and at layer 0); Embedding those of
	// the embedding table (and of an untied output projection).
	Parameters int `json:"parameters"`
	Trained    int `json:"trained"`
	Embedding  int `json:"embedding"`
	// Matched says how the row was widened or narrowed ("" when not).
	Matched string `json:"matched,omitempty"`
}

// shapes builds every row's model at every size, matching parameter
// counts, and checks each group's rows are within the tolerance.
func (e *experiment) shapes(ctx context.Context, vocab int) (map[string]shape, error) {
	out := map[string]shape{}
	for si := range e.Sizes {
		s := &e.Sizes[si]
		for i := range e.Rows {
			r := &e.Rows[i]
			if !r.inSize(s.Name) || r.Match != nil {
				continue
			}
			sh, err := countParams(ctx, e.baseModel(r, s, vocab))
			if err != nil {
				return nil, fmt.Errorf("row %s, size %s: %w", r.Name, s.Name, err)
			}
			out[runKey(s.Name, r.Name)] = sh
		}
		for i := range e.Rows {
			r := &e.Rows[i]
			if !r.inSize(s.Name) || r.Match == nil {
				continue
			}
			target, ok := out[runKey(s.Name, r.Match.To)]
			if !ok {
				return nil, fmt.Errorf("row %s: its match %s has no size %s", r.Name, r.Match.To, s.Name)
			}
			sh, err := matchParams(ctx, e.baseModel(r, s, vocab), *r.Match, target.Trained)
			if err != nil {
				return nil, fmt.Errorf("row %s, size %s: %w", r.Name, s.Name, err)
			}
			out[runKey(s.Name, r.Name)] = sh
		}
	}
	for _, g := range e.Groups {
		for _, s := range e.Sizes {
			if !g.inSize(s.Name) {
				continue
			}
			ref := out[runKey(s.Name, g.Rows[0])]
			for _, n := range g.Rows[1:] {
				sh := out[runKey(s.Name, n)]
				if d := relDiff(sh.Trained, ref.Trained); d > e.Tolerance {
					return nil, fmt.Errorf("group %s, size %s: row %s has %d trained parameters, %s %d: %.1f%% apart (param-tolerance %.1f%%)",
						g.Name, s.Name, n, sh.Trained, g.Rows[0], ref.Trained, 100*d, 100*e.Tolerance)
				}
			}
		}
	}
	return out, nil
}

func relDiff(a, b int) float64 { return math.Abs(float64(a-b)) / float64(b) }

func runKey(size, row string) string { return size + "/" + row }

// matchParams moves m.Knob in steps of m.Step from its value in model
// until the trained parameter count is closest to target.
func matchParams(ctx context.Context, model map[string]any, m match, target int) (shape, error) {
	v0, ok := model[m.Knob].(int)
	if !ok {
		return shape{}, fmt.Errorf("match: the config has no integer %q", m.Knob)
	}
	at := func(v int) (shape, error) {
		mm := maps.Clone(model)
		mm[m.Knob] = v
		return countParams(ctx, mm)
	}
	best, err := at(v0)
	if err != nil {
		return shape{}, err
	}
	dir := m.Step
	if best.Trained > target {
		dir = -m.Step
	}
	for v := v0 + dir; v > 0; v += dir {
		sh, err := at(v)
		if err != nil {
			return shape{}, err
		}
		if abs(sh.Trained-target) >= abs(best.Trained-target) {
			break
		}
		best = sh
	}
	if v := best.Model[m.Knob].(int); v != v0 {
		best.Matched = fmt.Sprintf("%s %d → %d", m.Knob, v0, v)
	}
	return best, nil
}

func abs(x int) int { return max(x, -x) }

// countParams builds the model a config.json describes and counts its
// parameters, and those a training step changes: the ones with a nonzero
// gradient after one batch of random tokens.
func countParams(ctx context.Context, model map[string]any) (shape, error) {
	raw, err := json.Marshal(model)
	if err != nil {
		return shape{}, err
	}
	a, err := api.LookupArchitecture(model["model_type"].(string))
	if err != nil {
		return shape{}, err
	}
	cfg, err := a.ParseConfig(raw)
	if err != nil {
		return shape{}, err
	}
	m, err := a.New(ctx, cfg, api.BuildOptions{Seed: 1, BackendOptions: api.BackendOptions{Threads: 1}})
	if err != nil {
		return shape{}, err
	}
	defer m.Close()
	tm, ok := m.(api.Trainable)
	if !ok {
		return shape{}, fmt.Errorf("%s models do not train in this process", a.Name())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const T = 16
	b := api.Batch{Inputs: [][]int32{make([]int32, T)}, Targets: [][]int32{make([]int32, T)}}
	for t := range T {
		b.Inputs[0][t] = int32(rng.IntN(cfg.Vocab()))
		b.Targets[0][t] = int32(rng.IntN(cfg.Vocab()))
	}
	tm.ZeroGrad()
	if _, err := tm.LossAndGrad(ctx, b); err != nil {
		return shape{}, err
	}
	sh := shape{Model: model}
	for _, g := range tm.Grads() {
		n := g.Value.Shape().NumElements()
		sh.Parameters += n
		if isEmbedding(g.Name) {
			sh.Embedding += n
		}
		hf, ok := g.Value.(api.HostFloat32s)
		if !ok {
			return shape{}, fmt.Errorf("gradient %s is not in host memory", g.Name)
		}
		if slices.ContainsFunc(hf.HostFloat32s(), func(x float32) bool { return x != 0 }) {
			sh.Trained += n
		}
	}
	return sh, nil
}

// isEmbedding reports whether a parameter is the embedding table or the
// output projection (the vocabulary's share of the parameters).
func isEmbedding(name string) bool {
	return strings.Contains(name, "embed") || strings.Contains(name, "lm_head") || strings.Contains(name, "output_projection")
}
