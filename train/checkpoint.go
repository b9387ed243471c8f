package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/internal/readcap"
)

// Files of a training checkpoint. A checkpoint is a directory
// Dir/checkpoints/step-NNNNNNNN holding the model (config.json and
// model.safetensors, loadable as any model directory), the Trainer's
// Files (tokenizer.json), the optimizer's state and the trainer's state.
const (
	CheckpointsDir = "checkpoints"
	OptimizerFile  = "optimizer.safetensors"
	StateFile      = "trainer_state.json"
	stepPrefix     = "step-"
	tempPrefix     = ".tmp-" + stepPrefix
)

// State is what a checkpoint records about the run besides the weights and
// the optimizer's buffers. The data order is a function of the seed and
// the epoch, so Data is all the random state there is.
type State struct {
	Step           int           `json:"step"`
	Tokens         int64         `json:"tokens"`
	Elapsed        float64       `json:"elapsed_s"`
	Data           data.Position `json:"data_position"`
	OptimizerSteps int64         `json:"optimizer_steps"`
	Config         Config        `json:"config"`
}

// StepDir returns the directory of the checkpoint of step under dir.
func StepDir(dir string, step int) string {
	return filepath.Join(dir, CheckpointsDir, fmt.Sprintf("%s%08d", stepPrefix, step))
}

// Latest returns the newest checkpoint under dir and its step; ok is false
// when there is none.
func Latest(dir string) (path string, step int, ok bool, err error) {
	steps, err := listSteps(dir)
	if err != nil || len(steps) == 0 {
		return "", 0, false, err
	}
	s := steps[len(steps)-1]
	return StepDir(dir, s), s, true, nil
}

// listSteps returns the steps of the complete checkpoints under dir, in
// increasing order. A checkpoint is complete once its directory has its
// final name: it is renamed into place after every file is written.
func listSteps(dir string) ([]int, error) {
	entries, err := os.ReadDir(filepath.Join(dir, CheckpointsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	var steps []int
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), stepPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		if s, err := strconv.Atoi(n); err == nil && s >= 0 {
			steps = append(steps, s)
		}
	}
	slices.Sort(steps)
	return steps, nil
}

// ReadState reads the trainer's state of the checkpoint in stepDir.
func ReadState(stepDir string) (State, error) {
	raw, err := readcap.File(filepath.Join(stepDir, StateFile), 1<<20)
	if err != nil {
		return State{}, fmt.Errorf("checkpoint %s: %w", stepDir, err)
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return State{}, fmt.Errorf("checkpoint %s: %s: %v: %w", stepDir, StateFile, err, api.ErrCorrupt)
	}
	if err := s.Config.Validate(); err != nil {
		return State{}, fmt.Errorf("checkpoint %s: %s: %w", stepDir, StateFile, err)
	}
	if s.Step < 0 || s.Step > s.Config.Steps {
		return State{}, fmt.Errorf("checkpoint %s: step %d: %w", stepDir, s.Step, api.ErrCorrupt)
	}
	return s, nil
}

// Restore continues from the checkpoint in stepDir, whose weights the
// trainer's model must already hold (checkpoint.LoadModel of stepDir): it
// restores the optimizer's state, the step and token counters and the data
// position, so that Run goes on exactly as the run that saved it would
// have. The trainer's Config may differ from the saved one only in Steps
// (a run can be extended; its schedule then changes from there on).
func (t *Trainer) Restore(stepDir string) error {
	s, err := ReadState(stepDir)
	if err != nil {
		return err
	}
	want, got := s.Config, t.cfg
	want.Steps, got.Steps = 0, 0
	if want != got {
		return fmt.Errorf("checkpoint %s was made with other settings than this run's (only --steps may change on resume): %w", stepDir, api.ErrConfig)
	}
	if s.Step > t.cfg.Steps {
		return fmt.Errorf("checkpoint %s is at step %d, beyond --steps %d: %w", stepDir, s.Step, t.cfg.Steps, api.ErrConfig)
	}
	ck, err := checkpoint.Open(filepath.Join(stepDir, OptimizerFile))
	if err != nil {
		return fmt.Errorf("optimizer state: %w", err)
	}
	defer ck.Close()
	state := api.OptimizerState{Steps: s.OptimizerSteps}
	for _, ti := range ck.Tensors() {
		v, err := ck.Float32s(ti.Name)
		if err != nil {
			return fmt.Errorf("optimizer state: %w", err)
		}
		raw := make([]byte, 4*len(v))
		if err := api.EncodeFloat32(raw, api.F32, v); err != nil {
			return err
		}
		state.Tensors = append(state.Tensors, api.HostTensor{Name: ti.Name, DType: api.F32, Shape: api.Shape{len(v)}, Data: raw})
	}
	if err := t.stepper.SetOptimizerState(context.Background(), t.cfg.Optimizer, state); err != nil {
		return fmt.Errorf("checkpoint %s: %w", stepDir, err)
	}
	if err := t.src.Seek(s.Data); err != nil {
		return fmt.Errorf("checkpoint %s: data position: %w", stepDir, err)
	}
	t.step, t.tokens, t.elapsed, t.saved = s.Step, s.Tokens, s.Elapsed, s.Step
	return nil
}

// save writes the checkpoint of the current step with data position pos:
// every file into a temporary directory, which is then renamed to its
// step's name, so that a save cut short leaves the earlier checkpoints as
// they were. The model files are then linked into Dir itself (Dir is a
// loadable model directory holding the newest weights), and checkpoints
// beyond Keep are removed, oldest first.
func (t *Trainer) save(ctx context.Context, pos data.Position) (err error) {
	if t.Dir == "" {
		return nil
	}
	root := filepath.Join(t.Dir, CheckpointsDir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	removeTemps(root)
	tmp, err := os.MkdirTemp(root, tempPrefix)
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp's 0700
		os.RemoveAll(tmp)
		return fmt.Errorf("save checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
			err = fmt.Errorf("save checkpoint of step %d: %w", t.step, err)
		}
	}()
	if err := checkpoint.SaveModel(ctx, tmp, t.model); err != nil {
		return err
	}
	for name, b := range t.Files {
		if err := atomicfile.WriteFile(filepath.Join(tmp, name), b); err != nil {
			return err
		}
	}
	opt, err := t.stepper.OptimizerState(ctx)
	if err != nil {
		return err
	}
	var tensors []checkpoint.NamedTensor
	for _, h := range opt.Tensors {
		tensors = append(tensors, checkpoint.NamedTensor{Name: h.Name, DType: h.DType, Shape: h.Shape, Data: h.Data})
	}
	meta := map[string]string{"optimizer": t.cfg.Optimizer.Name, "step": strconv.Itoa(t.step)}
	if err := checkpoint.Write(ctx, filepath.Join(tmp, OptimizerFile), tensors, meta); err != nil {
		return err
	}
	st, err := json.MarshalIndent(State{Step: t.step, Tokens: t.tokens, Elapsed: t.elapsed, Data: pos, OptimizerSteps: opt.Steps, Config: t.cfg}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, StateFile), append(st, '\n')); err != nil {
		return err
	}
	final := StepDir(t.Dir, t.step)
	if err := os.RemoveAll(final); err != nil { // a step saved before (a resumed run's first save)
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if err := syncDir(root); err != nil {
		return err
	}
	t.saved = t.step
	if err := t.publish(final); err != nil {
		return err
	}
	if err := t.prune(); err != nil {
		return err
	}
	if t.OnCheckpoint != nil {
		t.OnCheckpoint(t.step, final)
	}
	return nil
}

// publish makes Dir a model directory holding the checkpoint in final:
// each file is hard-linked (copied where links fail) under a temporary
// name and renamed over the old one.
func (t *Trainer) publish(final string) error {
	names := []string{checkpoint.SingleFileName, checkpoint.ConfigFileName}
	for name := range t.Files {
		names = append(names, name)
	}
	for _, name := range names {
		src, dst := filepath.Join(final, name), filepath.Join(t.Dir, name)
		tmp := dst + ".link-tmp"
		os.Remove(tmp)
		if err := os.Link(src, tmp); err != nil {
			b, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(dst, b); err != nil {
				return err
			}
			continue
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	return syncDir(t.Dir)
}

// prune removes the oldest checkpoints beyond Keep.
func (t *Trainer) prune() error {
	steps, err := listSteps(t.Dir)
	if err != nil {
		return err
	}
	for len(steps) > t.cfg.Keep {
		if err := os.RemoveAll(StepDir(t.Dir, steps[0])); err != nil {
			return err
		}
		steps = steps[1:]
	}
	return nil
}

// removeTemps deletes what saves cut short left in root.
func removeTemps(root string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// syncDir flushes a directory's entries (renames) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
