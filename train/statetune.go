package train

import (
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/densessm/densessm/api"
)

// StateTuning learns the initial state of a frozen model (api.StateTuner):
// a one-sequence state that every sequence starts from, a few thousand
// numbers that adapt the model to a corpus (docs/state.md). It runs the
// same data, optimizer, schedule and clipping as a training run; of
// Config it reads Steps, Accum, Optimizer, Schedule, ClipNorm, DocResets,
// EvalEvery and EvalBatches (Src sets the batches).
type StateTuning struct {
	Model  api.StateTuner
	Config Config
	Src    Source
	// Separator ends each document in the data (Trainer.Separator); -1:
	// none.
	Separator int32
	// Eval, if set, returns the validation batches (a fresh iteration on
	// each call), scored from the state being learnt.
	Eval func() iter.Seq2[api.Batch, error]
	// OnStep and OnEval, if set, are called after each update and
	// validation.
	OnStep func(StepMetrics)
	OnEval func(EvalMetrics)
}

// Run learns init, a one-sequence state of the model, for Config.Steps
// updates, writing each update into it (api.StateSaver.LoadState), and
// validates at every EvalEvery steps and at the end. When ctx is cancelled
// it returns ctx's error between micro-batches, init holding the state of
// the last completed step. A loss or gradient that is not finite stops it
// before the update, with an error wrapping ErrNotFinite.
func (s *StateTuning) Run(ctx context.Context, init api.State) (err error) {
	defer api.Recover(&err)
	if err := s.Config.Validate(); err != nil {
		return err
	}
	if s.Config.DocResets && !s.Model.Info().Packed {
		return fmt.Errorf("document resets: %s models do not take packed batches: %w", s.Model.Info().Arch, api.ErrUnsupported)
	}
	saver, ok := s.Model.(api.StateSaver)
	local, isLocal := s.Model.(api.LocalModel)
	if !ok || !isLocal || !s.Model.Info().Snapshots {
		return fmt.Errorf("state tuning: %s models do not save their states in this process: %w", s.Model.Info().Arch, api.ErrUnsupported)
	}
	snap, err := saver.SaveState(ctx, init)
	if err != nil {
		return fmt.Errorf("state tuning: %w", err)
	}
	if snap.Batch != 1 {
		return fmt.Errorf("state tuning: a state of %d sequences, want 1: %w", snap.Batch, api.ErrShape)
	}
	b := local.Backend()
	params := make([]api.Parameter, len(snap.Tensors))
	grads := make([]api.Parameter, len(snap.Tensors))
	for i, t := range snap.Tensors {
		if t.DType != api.F32 {
			return fmt.Errorf("state tuning: state tensor %s is %s, want F32: %w", t.Name, t.DType, api.ErrDType)
		}
		params[i] = api.Parameter{Name: t.Name, Value: api.FromFloat32s(b, floats(t.Data), t.Shape...)}
		grads[i] = api.Parameter{Name: t.Name, Value: b.Alloc(api.F32, t.Shape...)}
	}
	opt, err := NewOptimizer(s.Config.Optimizer, params)
	if err != nil {
		return err
	}
	cfg := s.Config
	resets := docResets{cfg.DocResets, s.Separator}
	var tokens int64
	var elapsed float64
	for step := 1; step <= cfg.Steps; step++ {
		start := time.Now()
		sum := make([][]float32, len(params))
		var loss float64
		var stepTokens int64
		for range cfg.Accum {
			if err := ctx.Err(); err != nil {
				return err
			}
			batch, err := s.Src.Next(ctx)
			if err != nil {
				return fmt.Errorf("step %d: data: %w", step, err)
			}
			l, g, err := s.Model.StateLossAndGrad(ctx, init, resets.batch(batch))
			if err != nil {
				return fmt.Errorf("step %d: %w", step, err)
			}
			loss += l / float64(cfg.Accum)
			stepTokens += countTargets(batch)
			for i, h := range g {
				v := floats(h.Data)
				if sum[i] == nil {
					sum[i] = make([]float32, len(v))
				}
				for k, x := range v {
					sum[i][k] += x / float32(cfg.Accum)
				}
			}
		}
		acc := make([]api.HostTensor, len(sum))
		for i, v := range sum {
			acc[i] = api.HostTensor{Name: grads[i].Name, DType: api.F32, Shape: grads[i].Value.Shape(), Data: bytesOf(v)}
		}
		if err := api.WriteParameters(ctx, grads, acc); err != nil {
			return err
		}
		norm, bad := globalNorm(grads)
		if bad != "" || math.IsNaN(loss) || math.IsInf(loss, 0) {
			return fmt.Errorf("step %d: loss %g, gradient of %q: %w", step, loss, bad, ErrNotFinite)
		}
		if cfg.ClipNorm > 0 && norm > cfg.ClipNorm {
			for _, g := range grads {
				b.Affine(g.Value, g.Value, float32(cfg.ClipNorm/(norm+1e-6)), 0)
			}
		}
		lr := cfg.Optimizer.LR * cfg.Schedule.Factor(step-1, cfg.Steps)
		if err := opt.Step(params, grads, lr); err != nil {
			return err
		}
		if snap.Tensors, err = api.ReadParameters(ctx, params, nil); err != nil {
			return err
		}
		if err := saver.LoadState(ctx, init, snap); err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		sec := time.Since(start).Seconds()
		elapsed += sec
		tokens += stepTokens
		if s.OnStep != nil {
			s.OnStep(StepMetrics{Step: step, Loss: loss, LR: lr, GradNorm: norm, Tokens: tokens, TokensPerSec: float64(stepTokens) / sec, Elapsed: elapsed})
		}
		if s.Eval != nil && (step == cfg.Steps || (cfg.EvalEvery > 0 && step%cfg.EvalEvery == 0)) {
			l, n, err := StateMeanLoss(ctx, s.Model, init, resets.seq(s.Eval()), cfg.EvalBatches)
			if err != nil {
				return fmt.Errorf("step %d: validation: %w", step, err)
			}
			if s.OnEval != nil {
				s.OnEval(EvalMetrics{Step: step, Loss: l, Tokens: n})
			}
		}
	}
	return nil
}

// StateMeanLoss returns the mean cross-entropy of m over the first max
// batches of batches (0: all), every sequence starting from init
// (api.StateTuner.StateLossAndGrad), and the number of targets counted.
func StateMeanLoss(ctx context.Context, m api.StateTuner, init api.State, batches iter.Seq2[api.Batch, error], max int) (float64, int64, error) {
	return meanOver(batches, max, func(b api.Batch) (float64, int64, error) {
		l, _, err := m.StateLossAndGrad(ctx, init, b)
		k := countTargets(b)
		return l * float64(k), k, err
	})
}

// bytesOf returns v as little-endian bytes.
func bytesOf(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

// floats reads little-endian float32 values.
func floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}
