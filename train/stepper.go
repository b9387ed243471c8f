package train

import (
	"context"
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
)

// Stepper returns what runs m's optimisation steps: m itself when it is an
// api.TrainStepper (a model in a plugin process trains there), else a
// stepper in this process around an api.Trainable model, holding the
// optimizer. Both run the code of this package, so a model trains to the
// same bits in process and through a plugin.
func Stepper(m api.Model) (api.TrainStepper, error) {
	switch m := m.(type) {
	case api.TrainStepper:
		return m, nil
	case api.Trainable:
		return &LocalStepper{m: m}, nil
	}
	return nil, fmt.Errorf("%s models do not train: %w", m.Config().ArchName(), api.ErrUnsupported)
}

// LocalStepper runs optimisation steps of an in-process model. Plugin
// servers use it to implement the TrainStep request.
type LocalStepper struct {
	m   api.Trainable
	opt *Optimizer
	// reduce, when set (Trainer.SetReducer), combines the step's summed
	// loss and gradients with those of the other processes of a
	// data-parallel run before anything reads them.
	reduce func(ctx context.Context, loss float64, grads []api.Parameter) (float64, error)
}

// NewLocalStepper returns a stepper of m with no optimizer yet: the first
// step (or SetOptimizerState) builds it.
func NewLocalStepper(m api.Trainable) *LocalStepper { return &LocalStepper{m: m} }

// TrainStep implements api.TrainStepper: the micro-batches' mean loss and
// gradients, a check that both are finite, global-norm clipping and the
// optimizer's update.
func (s *LocalStepper) TrainStep(ctx context.Context, req api.TrainStepRequest) (_ api.TrainStepResult, err error) {
	defer api.Recover(&err)
	if len(req.Batches) == 0 {
		return api.TrainStepResult{}, fmt.Errorf("train step with no batch: %w", api.ErrShape)
	}
	if err := s.optimizer(req.Optimizer); err != nil {
		return api.TrainStepResult{}, err
	}
	params, grads := s.m.Parameters(), s.m.Grads()
	s.m.ZeroGrad()
	var loss float64
	for _, b := range req.Batches {
		if err := ctx.Err(); err != nil {
			return api.TrainStepResult{}, err
		}
		l, err := s.m.LossAndGrad(ctx, b)
		if err != nil {
			return api.TrainStepResult{}, err
		}
		loss += l
	}
	if err := ctx.Err(); err != nil {
		return api.TrainStepResult{}, err
	}
	if s.reduce != nil {
		if loss, err = s.reduce(ctx, loss, grads); err != nil {
			return api.TrainStepResult{}, err
		}
	}
	b := s.m.Backend()
	if n := len(req.Batches); n > 1 {
		loss /= float64(n)
		for _, g := range grads {
			b.Affine(g.Value, g.Value, float32(1/float64(n)), 0)
		}
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return api.TrainStepResult{}, fmt.Errorf("the loss is %g: %w (lower --lr, raise --warmup or set --clip)", loss, api.ErrNotFinite)
	}
	norm, bad := globalNorm(grads)
	if bad != "" {
		return api.TrainStepResult{}, fmt.Errorf("the gradient of %s is %g: %w (lower --lr, raise --warmup or set --clip)", bad, norm, api.ErrNotFinite)
	}
	if req.ClipNorm > 0 && norm > req.ClipNorm {
		scale := float32(req.ClipNorm / (norm + 1e-6))
		for _, g := range grads {
			b.Affine(g.Value, g.Value, scale, 0)
		}
	}
	if err := s.opt.Step(params, grads, req.LR); err != nil {
		return api.TrainStepResult{}, err
	}
	return api.TrainStepResult{Loss: loss, GradNorm: norm}, nil
}

// optimizer builds the optimizer cfg describes, or checks that it is the
// one built.
func (s *LocalStepper) optimizer(cfg api.OptimizerConfig) error {
	if s.opt == nil {
		opt, err := NewOptimizer(cfg, s.m.Parameters())
		if err != nil {
			return err
		}
		s.opt = opt
		return nil
	}
	if s.opt.Config() != cfg {
		return fmt.Errorf("train step: optimizer %+v, but this run's is %+v: %w", cfg, s.opt.Config(), api.ErrConfig)
	}
	return nil
}

// OptimizerState implements api.TrainStepper.
func (s *LocalStepper) OptimizerState(ctx context.Context) (api.OptimizerState, error) {
	if s.opt == nil {
		return api.OptimizerState{}, nil
	}
	var out api.OptimizerState
	out.Steps = s.opt.Steps()
	for _, st := range s.opt.State() {
		raw := make([]byte, 4*len(st.Values))
		if err := api.EncodeFloat32(raw, api.F32, st.Values); err != nil {
			return api.OptimizerState{}, err
		}
		out.Tensors = append(out.Tensors, api.HostTensor{Name: st.Name(), DType: api.F32, Shape: api.Shape{len(st.Values)}, Data: raw})
	}
	return out, nil
}

// SetOptimizerState implements api.TrainStepper.
func (s *LocalStepper) SetOptimizerState(ctx context.Context, cfg api.OptimizerConfig, st api.OptimizerState) error {
	opt, err := NewOptimizer(cfg, s.m.Parameters())
	if err != nil {
		return err
	}
	if len(st.Tensors) == 0 && st.Steps == 0 { // saved before the first step
		s.opt = opt
		return nil
	}
	state := make(map[string][]float32, len(st.Tensors))
	for _, t := range st.Tensors {
		if t.DType != api.F32 {
			return fmt.Errorf("optimizer state %s: %s, want F32: %w", t.Name, t.DType, api.ErrDType)
		}
		v := make([]float32, t.Shape.NumElements())
		if err := api.DecodeFloat32(v, api.F32, t.Data); err != nil {
			return fmt.Errorf("optimizer state %s: %w", t.Name, err)
		}
		state[t.Name] = v
	}
	if err := opt.Restore(state, st.Steps); err != nil {
		return err
	}
	s.opt = opt
	return nil
}
