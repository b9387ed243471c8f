package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/densessm/densessm/api"
)

// State files hold an api.StateSnapshot as a safetensors file: its tensors
// under the model's names, and in the metadata what the file is
// (StateKey), the identity of the model that made it, the batch and token
// counts, and the tensors' order (the model's, which the file's sorted
// names lose). docs/state.md describes them.
const (
	// StateKey marks a state file; its value is the format's version,
	// StateVersion.
	StateKey = "densessm.state"
	// StateVersion is the version of the state files this package writes
	// and reads.
	StateVersion = "1"

	stateArchKey    = "densessm.state.arch"
	stateConfigKey  = "densessm.state.config_sha256"
	stateWeightsKey = "densessm.state.weights_sha256"
	stateBatchKey   = "densessm.state.batch"
	stateTokensKey  = "densessm.state.tokens"
	stateLensKey    = "densessm.state.lens" // only when the sequences' counts differ
	stateOrderKey   = "densessm.state.tensors"
)

// WriteState writes snap to path atomically (a reader sees the old file or
// the whole new one).
func WriteState(ctx context.Context, path string, snap api.StateSnapshot) error {
	order, err := json.Marshal(stateNames(snap))
	if err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	tensors := make([]NamedTensor, len(snap.Tensors))
	for i, t := range snap.Tensors {
		tensors[i] = NamedTensor(t)
	}
	md := map[string]string{
		StateKey:        StateVersion,
		stateArchKey:    snap.Arch,
		stateConfigKey:  snap.ConfigHash,
		stateWeightsKey: snap.WeightsHash,
		stateBatchKey:   strconv.Itoa(snap.Batch),
		stateTokensKey:  strconv.Itoa(snap.Tokens),
		stateOrderKey:   string(order),
	}
	if snap.Lens != nil {
		lens, err := json.Marshal(snap.Lens)
		if err != nil {
			return fmt.Errorf("write state %s: %w", path, err)
		}
		md[stateLensKey] = string(lens)
	}
	return Write(ctx, path, tensors, md)
}

// stateNames returns the names of snap's tensors in order.
func stateNames(snap api.StateSnapshot) []string {
	names := make([]string, len(snap.Tensors))
	for i, t := range snap.Tensors {
		names[i] = t.Name
	}
	return names
}

// ReadState reads the state file at path. A file that is not a state file
// of this version, or whose metadata does not agree with its tensors,
// gives an error wrapping api.ErrCorrupt; the safetensors header is
// checked against the file's size before anything is read (Open).
func ReadState(path string) (_ api.StateSnapshot, err error) {
	c, err := Open(path)
	if err != nil {
		return api.StateSnapshot{}, fmt.Errorf("read state: %w", err)
	}
	defer c.Close()
	snap, err := c.state()
	if err != nil {
		return api.StateSnapshot{}, fmt.Errorf("read state %s: %w", path, err)
	}
	return snap, nil
}

// ReadStateBytes is ReadState for a state file held in memory, under a
// name used in errors.
func ReadStateBytes(name string, data []byte) (api.StateSnapshot, error) {
	c, err := OpenBytes(name, data)
	if err != nil {
		return api.StateSnapshot{}, fmt.Errorf("read state: %w", err)
	}
	defer c.Close()
	snap, err := c.state()
	if err != nil {
		return api.StateSnapshot{}, fmt.Errorf("read state %s: %w", name, err)
	}
	return snap, nil
}

// state returns the snapshot c holds, its tensors copied out of the file.
func (c *Checkpoint) state() (api.StateSnapshot, error) {
	md := c.metadata
	if v, ok := md[StateKey]; !ok {
		return api.StateSnapshot{}, fmt.Errorf("not a state file (no %q in its metadata): %w", StateKey, api.ErrCorrupt)
	} else if v != StateVersion {
		return api.StateSnapshot{}, fmt.Errorf("state file version %q, this build reads %q: %w", v, StateVersion, api.ErrUnsupported)
	}
	count := func(key string, least int) (int, error) {
		n, err := strconv.Atoi(md[key])
		if err != nil || n < least {
			return 0, fmt.Errorf("%s is %q, not a whole number of at least %d: %w", key, md[key], least, api.ErrCorrupt)
		}
		return n, nil
	}
	batch, err := count(stateBatchKey, 1)
	if err != nil {
		return api.StateSnapshot{}, err
	}
	tokens, err := count(stateTokensKey, 0)
	if err != nil {
		return api.StateSnapshot{}, err
	}
	var names []string
	dec := json.NewDecoder(bytes.NewReader([]byte(md[stateOrderKey])))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&names); err != nil {
		return api.StateSnapshot{}, fmt.Errorf("%s: %v: %w", stateOrderKey, err, api.ErrCorrupt)
	}
	if len(names) != len(c.tensors) {
		return api.StateSnapshot{}, fmt.Errorf("%s names %d tensors, the file holds %d: %w", stateOrderKey, len(names), len(c.tensors), api.ErrCorrupt)
	}
	snap := api.StateSnapshot{
		Arch: md[stateArchKey], ConfigHash: md[stateConfigKey], WeightsHash: md[stateWeightsKey],
		Batch: batch, Tokens: tokens,
	}
	if raw, ok := md[stateLensKey]; ok {
		if err := json.Unmarshal([]byte(raw), &snap.Lens); err != nil || snap.Lens == nil {
			return api.StateSnapshot{}, fmt.Errorf("%s is %q, not a list of counts: %w", stateLensKey, raw, api.ErrCorrupt)
		}
		if err := snap.CheckLens(); err != nil {
			return api.StateSnapshot{}, err
		}
	}
	snap.Tensors = make([]api.HostTensor, len(names))
	seen := make(map[string]bool, len(names))
	for i, name := range names {
		if seen[name] {
			return api.StateSnapshot{}, fmt.Errorf("%s names %q twice: %w", stateOrderKey, name, api.ErrCorrupt)
		}
		seen[name] = true
		info, err := c.find(name)
		if err != nil {
			return api.StateSnapshot{}, fmt.Errorf("%s names %q, which the file does not hold: %w", stateOrderKey, name, api.ErrCorrupt)
		}
		raw, err := c.Raw(name)
		if err != nil {
			return api.StateSnapshot{}, err
		}
		snap.Tensors[i] = api.HostTensor{Name: name, DType: info.DType, Shape: info.Shape.Clone(), Data: bytes.Clone(raw)}
	}
	return snap, nil
}
