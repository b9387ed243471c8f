package api

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"unsafe"
)

// StateSaver is a model whose recurrent states can be read out and written
// back (the optional capability behind snapshots: Snapshot, Restore,
// CopyState). A state holds a fixed amount of data whatever the number of
// tokens it has consumed, so a snapshot at any token continues exactly as
// the state would have.
type StateSaver interface {
	Model
	// SaveState returns a copy of s's contents: Batch, Tokens and Tensors
	// (named by the model, in a fixed order, each with the batch as its
	// first axis). The identity fields are left empty; Snapshot fills
	// them.
	SaveState(ctx context.Context, s State) (StateSnapshot, error)
	// LoadState overwrites s, a state of snap.Batch sequences made by this
	// model, with snap's Tensors and Tokens. Tensors must be exactly the
	// names, dtypes and shapes SaveState gives (ErrShape otherwise); on an
	// error s is left as it was or reset.
	LoadState(ctx context.Context, s State, snap StateSnapshot) error
}

// StateSnapshot is the contents of a State at one token position, with
// what identifies the model that made it.
type StateSnapshot struct {
	// Arch is the registered name of the model's architecture.
	Arch string
	// ConfigHash is ConfigHash of the model's configuration.
	ConfigHash string
	// WeightsHash is WeightsHash of the model's parameters.
	WeightsHash string
	// Batch is the number of sequences.
	Batch int
	// Tokens is the number of tokens the sequences have consumed
	// (State.Len): the most any of them has.
	Tokens int
	// Lens holds each sequence's tokens when they differ (a state after a
	// Prefill of sequences of different lengths: StateLens), nil when
	// every sequence has consumed Tokens.
	Lens []int
	// Tensors are the state's contents, as the model names them.
	Tensors []HostTensor
}

// SeqLens returns the tokens each sequence has consumed.
func (s StateSnapshot) SeqLens() []int {
	if s.Lens != nil {
		return slices.Clone(s.Lens)
	}
	lens := make([]int, max(s.Batch, 0))
	for i := range lens {
		lens[i] = s.Tokens
	}
	return lens
}

// CheckLens reports Tokens and Lens out of their domain as ErrCorrupt:
// Tokens negative, or Lens not Batch counts in [0, Tokens] whose largest
// is Tokens.
func (s StateSnapshot) CheckLens() error {
	if s.Tokens < 0 {
		return fmt.Errorf("state at %d tokens: %w", s.Tokens, ErrCorrupt)
	}
	if s.Lens == nil {
		return nil
	}
	if len(s.Lens) != s.Batch || len(s.Lens) == 0 || slices.Min(s.Lens) < 0 || slices.Max(s.Lens) != s.Tokens {
		return fmt.Errorf("state of %d sequences at %d tokens with sequence lengths %v: %w", s.Batch, s.Tokens, s.Lens, ErrCorrupt)
	}
	return nil
}

// CompactLens returns the Tokens and Lens of a snapshot whose sequences
// have consumed lens tokens: the largest, and lens itself when they differ
// (nil when they are all the same).
func CompactLens(lens []int) (tokens int, per []int) {
	if len(lens) == 0 {
		return 0, nil
	}
	tokens = slices.Max(lens)
	if slices.Min(lens) == tokens {
		return tokens, nil
	}
	return tokens, slices.Clone(lens)
}

// SequenceLens is a State whose sequences may have consumed different
// numbers of tokens: after a Prefill of sequences of different lengths
// (Info.Packed models), each continues from its own.
type SequenceLens interface {
	// Lens returns each sequence's tokens.
	Lens() []int
}

// StateLens returns the tokens each sequence of s has consumed: its Lens
// when it has them, else Len for every sequence.
func StateLens(s State) []int {
	if sl, ok := s.(SequenceLens); ok {
		return sl.Lens()
	}
	lens := make([]int, s.Batch())
	for i := range lens {
		lens[i] = s.Len()
	}
	return lens
}

// Bytes returns the size of the snapshot's tensors.
func (s StateSnapshot) Bytes() int64 {
	var n int64
	for _, t := range s.Tensors {
		n += int64(len(t.Data))
	}
	return n
}

// MaxDiff returns the largest absolute difference between the F32 tensors
// of s and o, which must hold the same tensors (names, dtypes, shapes) and
// the same Batch and Tokens (ErrShape otherwise): how far two states that
// should agree (a restored one and the original, two forms of one model)
// have drifted apart.
func (s StateSnapshot) MaxDiff(o StateSnapshot) (float64, error) {
	if s.Batch != o.Batch || s.Tokens != o.Tokens || !slices.Equal(s.Lens, o.Lens) || len(s.Tensors) != len(o.Tensors) {
		return 0, fmt.Errorf("state snapshots of %d sequences at %d tokens (%d tensors) and of %d at %d (%d tensors): %w",
			s.Batch, s.Tokens, len(s.Tensors), o.Batch, o.Tokens, len(o.Tensors), ErrShape)
	}
	var diff float64
	for i, a := range s.Tensors {
		b := o.Tensors[i]
		if a.Name != b.Name || a.DType != F32 || b.DType != F32 || !slices.Equal(a.Shape, b.Shape) || len(a.Data) != len(b.Data) {
			return 0, fmt.Errorf("state tensor %s %s%v against %s %s%v: %w", a.Name, a.DType, a.Shape, b.Name, b.DType, b.Shape, ErrShape)
		}
		for j := 0; j+4 <= len(a.Data); j += 4 {
			x := float64(math.Float32frombits(binary.LittleEndian.Uint32(a.Data[j:])))
			y := float64(math.Float32frombits(binary.LittleEndian.Uint32(b.Data[j:])))
			d := math.Abs(x - y)
			if math.IsNaN(d) {
				return math.Inf(1), nil
			}
			diff = max(diff, d)
		}
	}
	return diff, nil
}

// ConfigHash returns the hex SHA-256 of cfg's JSON encoding (the one
// config.json files are written with), which tells models of different
// configurations apart.
func ConfigHash(cfg Config) (string, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("config hash: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// WeightsHash returns the hex SHA-256 of m's parameters: of each
// parameter in the order of Params, its name, dtype, shape and stored
// bytes. It reads one parameter at a time (ReadParams), so its memory is
// that of the largest parameter; its time is that of reading every weight
// once (about a third of a second for 500 MB).
func WeightsHash(ctx context.Context, m Model) (string, error) {
	h := sha256.New()
	add := func(name string, d DType, shape Shape, data []byte) {
		fmt.Fprintf(h, "%q %s %v %d\n", name, d, shape, len(data))
		h.Write(data)
	}
	if lm, ok := m.(LocalModel); ok {
		// The tensors as they are, without a copy where they are host
		// memory in the byte order of the files.
		var buf []byte
		for _, p := range lm.Parameters() {
			if err := ctx.Err(); err != nil {
				return "", err
			}
			t := p.Value
			n := t.DType().Bytes(t.Shape().NumElements())
			if f, ok := t.(HostFloat32s); ok && t.DType() == F32 && littleEndian {
				if v := f.HostFloat32s(); 4*len(v) == n {
					add(p.Name, F32, t.Shape(), unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), n))
					continue
				}
			}
			buf = slices.Grow(buf[:0], n)[:n]
			t.Backend().Download(buf, t)
			add(p.Name, t.DType(), t.Shape(), buf)
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	for _, p := range m.Params() {
		vals, err := m.ReadParams(ctx, []string{p.Name})
		if err != nil {
			return "", fmt.Errorf("weights hash: %w", err)
		}
		for _, v := range vals {
			add(v.Name, v.DType, v.Shape, v.Data)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// littleEndian reports whether the host stores numbers little-endian, as
// HostTensor data and the files are.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// stateSaver returns m as a StateSaver, or an error wrapping
// ErrUnsupported.
func stateSaver(m Model) (StateSaver, error) {
	if s, ok := m.(StateSaver); ok {
		return s, nil
	}
	return nil, fmt.Errorf("%s model: state snapshots: %w", m.Config().ArchName(), ErrUnsupported)
}

// Identity returns the identity fields of snapshots of m's states: Arch,
// ConfigHash and WeightsHash set, the rest zero. Snapshots and restores
// of many states of one model can share it (WeightsHash reads every
// weight).
func Identity(ctx context.Context, m Model) (StateSnapshot, error) {
	cfg := m.Config()
	ch, err := ConfigHash(cfg)
	if err != nil {
		return StateSnapshot{}, err
	}
	wh, err := WeightsHash(ctx, m)
	if err != nil {
		return StateSnapshot{}, err
	}
	return StateSnapshot{Arch: cfg.ArchName(), ConfigHash: ch, WeightsHash: wh}, nil
}

// Snapshot returns a copy of s, a state of m, stamped with id (Identity
// of m).
func Snapshot(ctx context.Context, m Model, s State, id StateSnapshot) (StateSnapshot, error) {
	sv, err := stateSaver(m)
	if err != nil {
		return StateSnapshot{}, err
	}
	snap, err := sv.SaveState(ctx, s)
	if err != nil {
		return StateSnapshot{}, fmt.Errorf("state snapshot: %w", err)
	}
	snap.Arch, snap.ConfigHash, snap.WeightsHash = id.Arch, id.ConfigHash, id.WeightsHash
	return snap, nil
}

// CheckIdentity refuses (ErrConfig) a snapshot that a model other than the
// one id identifies (Identity) made: another architecture, another
// configuration or other weights.
func (s StateSnapshot) CheckIdentity(id StateSnapshot) error {
	switch {
	case s.Arch != id.Arch:
		return fmt.Errorf("state of a %s model, not of this %s model: %w", s.Arch, id.Arch, ErrConfig)
	case s.ConfigHash != id.ConfigHash:
		return fmt.Errorf("state of a %s model of another configuration (config sha256 %.12s, this model's %.12s): %w",
			s.Arch, s.ConfigHash, id.ConfigHash, ErrConfig)
	case s.WeightsHash != id.WeightsHash:
		return fmt.Errorf("state of a %s model with other weights (weights sha256 %.12s, this model's %.12s): %w",
			s.Arch, s.WeightsHash, id.WeightsHash, ErrConfig)
	}
	return nil
}

// Restore returns a new state of m holding snap, after checking that m
// (whose Identity is id) made it.
func Restore(ctx context.Context, m Model, snap StateSnapshot, id StateSnapshot) (State, error) {
	if err := snap.CheckIdentity(id); err != nil {
		return nil, err
	}
	return loadNew(ctx, m, snap)
}

// CopyState returns a new state of m holding what s holds: a branch, from
// which decoding goes on independently of s.
func CopyState(ctx context.Context, m Model, s State) (State, error) {
	sv, err := stateSaver(m)
	if err != nil {
		return nil, err
	}
	snap, err := sv.SaveState(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("copy state: %w", err)
	}
	return loadNew(ctx, m, snap)
}

// loadNew returns a new state of m with snap's contents.
func loadNew(ctx context.Context, m Model, snap StateSnapshot) (State, error) {
	sv, err := stateSaver(m)
	if err != nil {
		return nil, err
	}
	if snap.Batch < 1 || snap.Tokens < 0 {
		return nil, fmt.Errorf("state of %d sequences at %d tokens: %w", snap.Batch, snap.Tokens, ErrCorrupt)
	}
	if err := snap.CheckLens(); err != nil {
		return nil, err
	}
	// The batch sizes the new state: a damaged count must not allocate.
	for _, t := range snap.Tensors {
		if len(t.Shape) == 0 || t.Shape[0] != snap.Batch {
			return nil, fmt.Errorf("state tensor %q of shape %v in a state of %d sequences: %w", t.Name, t.Shape, snap.Batch, ErrCorrupt)
		}
	}
	s, err := m.NewState(snap.Batch)
	if err != nil {
		return nil, err
	}
	if err := sv.LoadState(ctx, s, snap); err != nil {
		s.Close()
		return nil, fmt.Errorf("restore state: %w", err)
	}
	return s, nil
}

// SaveStateTensors is StateSaver.SaveState for a state of batch sequences
// at tokens tokens made of the named tensors ts (in a fixed order).
func SaveStateTensors(ctx context.Context, batch, tokens int, ts []Parameter) (StateSnapshot, error) {
	host, err := ReadParameters(ctx, ts, nil)
	if err != nil {
		return StateSnapshot{}, err
	}
	return StateSnapshot{Batch: batch, Tokens: tokens, Tensors: host}, nil
}

// SaveStateLens is SaveStateTensors for a state whose sequences have
// consumed lens tokens each (one count per sequence): Tokens and Lens as
// CompactLens gives them.
func SaveStateLens(ctx context.Context, lens []int, ts []Parameter) (StateSnapshot, error) {
	tokens, per := CompactLens(lens)
	snap, err := SaveStateTensors(ctx, len(lens), tokens, ts)
	snap.Lens = per
	return snap, err
}

// LoadStateTensors is StateSaver.LoadState for a state of batch sequences
// made of the named tensors ts: snap must hold exactly those tensors, in
// that order, with their dtypes and shapes (ErrShape), and is checked
// whole before anything is written.
func LoadStateTensors(ctx context.Context, snap StateSnapshot, batch int, ts []Parameter) error {
	if snap.Batch != batch {
		return fmt.Errorf("state of %d sequences into a state of %d: %w", snap.Batch, batch, ErrShape)
	}
	if err := snap.CheckLens(); err != nil {
		return err
	}
	if len(snap.Tensors) != len(ts) {
		return fmt.Errorf("state of %d tensors, this model's states have %d: %w", len(snap.Tensors), len(ts), ErrShape)
	}
	for i, t := range snap.Tensors {
		if t.Name != ts[i].Name {
			return fmt.Errorf("state tensor %d is %q, this model's is %q: %w", i, t.Name, ts[i].Name, ErrShape)
		}
	}
	return WriteParameters(ctx, ts, snap.Tensors)
}
