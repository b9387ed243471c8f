package dense

import "github.com/densessm/densessm/architectures/memcount"

// Parameters counts the parameters of a Link that NewLink makes with c
// for input width d and linked width w (whatever c.M, as NewLink does not
// look at it except for the concat fusion's width): all of them, and
// those of its weight matrices (the Linear layers' weights).
func (c Config) Parameters(d, w int) memcount.Params {
	var n memcount.Params
	switch c.Gate {
	case GateSiluMLP:
		h := c.GateHidden(d)
		n.AddMatrix(1, h, d) // fc1 [h, d]
		n.AddMatrix(1, w, h) // fc2 [w, h]
	case GateLinear:
		n.AddMatrix(1, w, d)
	}
	if c.Projection == ProjLinear {
		n.AddMatrix(1, w, w)
	}
	if c.Fusion == FuseConcat {
		n.AddMatrix(1, w, int(memcount.Mul(int64(c.M)+1, int64(w)))) // [w, (m+1)w]
	}
	if c.Norm == NormRMS {
		n.Add(w)
	}
	return n
}

// GateActivations returns the floats per token that Gate allocates for
// input width d and linked width w: the gate's hidden layer and its output,
// each before and after the silu.
func (c Config) GateActivations(d, w int) int64 {
	var n memcount.Count
	switch c.Gate {
	case GateSiluMLP:
		n.Add(2, c.GateHidden(d))
		n.Add(2, w)
	case GateLinear:
		n.Add(w)
	}
	return n.Value()
}

// FuseActivations returns the floats per token that Fuse allocates for a
// linked width w and prev previous layers (prev >= 1): the selected
// tensors, the sums or the concatenation (with its zero slots) and its
// projection, and the norm.
func (c Config) FuseActivations(w, prev int) int64 {
	var n memcount.Count
	if c.Projection == ProjLinear {
		n.Add(prev, w)
	}
	if c.Gate != GateNone {
		n.Add(prev, w)
	}
	if c.Fusion == FuseConcat {
		n.Add(max(c.M-prev, 0), w) // zero slots
		n.Add(c.M+1, w)            // the concatenation
		n.Add(w)                   // its projection
	} else {
		n.Add(prev, w)
	}
	if c.Norm == NormRMS {
		n.Add(w)
	}
	return n.Value()
}

// StepScratchFloats returns the floats per sequence of the buffers
// NewStepScratch makes for input width d and linked width w.
func (c Config) StepScratchFloats(d, w int) int64 {
	var n memcount.Count
	n.Add(2, w) // sel, acc
	if c.Gate == GateSiluMLP {
		n.Add(c.GateHidden(d))
	}
	if c.Gate == GateSiluMLP || c.Gate == GateLinear {
		n.Add(w)
	}
	if c.Fusion == FuseConcat {
		n.Add(c.M+1, w)
	}
	if c.Norm == NormRMS {
		n.Add(w)
	}
	return n.Value()
}
