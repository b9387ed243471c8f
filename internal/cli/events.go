package cli

import (
	"encoding/json"
	"fmt"

	"github.com/densessm/densessm/train"
)

// The kinds of Event.
const (
	// EventProgress is what a progress bar shows (Event.Progress).
	EventProgress = "progress"
	// EventStep is a training step's metrics (Event.Step).
	EventStep = "step"
	// EventEval is a validation measurement of training (Event.Eval).
	EventEval = "eval"
	// EventCheckpoint is a checkpoint train has saved (Event.Checkpoint).
	EventCheckpoint = "checkpoint"
	// EventLog is a line the command printed on stderr (Event.Line).
	EventLog = "log"
)

// Event is a progress event of a command run by Execute with
// Options.Events. Kind says which one field is set:
//
//   - "progress": Progress, what a progress bar shows (the command draws
//     the bar itself only when stderr is a terminal): tokenizing, reading
//     a corpus, tokenizer merges, loading weights, training steps, tokens
//     or bytes scored by eval, ... One event when the bar starts, at most
//     one per 100 ms per bar as it moves, and always a last one, with
//     Final set, when it ends (completed or not).
//   - "step": Step, the metrics of a training step, after each step.
//   - "eval": Eval, a validation measurement during training.
//   - "checkpoint": Checkpoint, a checkpoint train has saved, including
//     the one saved when the run is interrupted.
//   - "log": Line, a line the command printed on stderr for humans
//     ("training X (N parameters) for N steps ...", "done: ..."), without
//     its newline. Lines are sent after they are written to Stderr.
//
// Its JSON is one object: "kind" and the fields of the set one, e.g.
// {"kind":"step","step":12,"loss":3.2,"lr":0.001,...} (train.StepMetrics'
// JSON fields), {"kind":"progress","desc":"tokenizing","done":1024,
// "total":4096,"bytes":true}, {"kind":"checkpoint","step":10,"dir":"..."},
// {"kind":"log","line":"..."}.
type Event struct {
	Kind string `json:"kind"`
	// Progress is set for "progress".
	Progress *Progress `json:"-"`
	// Step is set for "step".
	Step *train.StepMetrics `json:"-"`
	// Eval is set for "eval".
	Eval *train.EvalMetrics `json:"-"`
	// Checkpoint is set for "checkpoint".
	Checkpoint *CheckpointSaved `json:"-"`
	// Line is set for "log".
	Line string `json:"-"`
}

// Progress is the state of a progress bar.
type Progress struct {
	// Desc names the work: "tokenizing", "loading", "training", ...
	Desc string `json:"desc"`
	// Done is how much is done, of Total (0: unknown, a spinner).
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Bytes says the units are bytes, else items (steps, tokens, ...).
	Bytes bool `json:"bytes"`
	// Final marks the bar's last event.
	Final bool `json:"final,omitempty"`
}

// CheckpointSaved is a checkpoint train saved: the step it holds and its
// directory.
type CheckpointSaved struct {
	Step int    `json:"step"`
	Dir  string `json:"dir"`
}

// payload returns the field Kind says is set, or nil.
func (e *Event) payload() any {
	switch e.Kind {
	case EventProgress:
		return e.Progress
	case EventStep:
		return e.Step
	case EventEval:
		return e.Eval
	case EventCheckpoint:
		return e.Checkpoint
	case EventLog:
		return struct {
			Line string `json:"line"`
		}{e.Line}
	}
	return nil
}

// MarshalJSON writes the event as one object: "kind" and the fields of
// the payload Kind names.
func (e Event) MarshalJSON() ([]byte, error) {
	kind, err := json.Marshal(e.Kind)
	if err != nil {
		return nil, err
	}
	out := append([]byte(`{"kind":`), kind...)
	if p := e.payload(); p != nil {
		body, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		if len(body) > 2 && body[0] == '{' { // not null, not {}
			out = append(append(out, ','), body[1:]...)
			return out, nil
		}
	}
	return append(out, '}'), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *Event) UnmarshalJSON(b []byte) error {
	var k struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(b, &k); err != nil {
		return err
	}
	*e = Event{Kind: k.Kind}
	var err error
	switch k.Kind {
	case EventProgress:
		e.Progress = new(Progress)
		err = json.Unmarshal(b, e.Progress)
	case EventStep:
		e.Step = new(train.StepMetrics)
		err = json.Unmarshal(b, e.Step)
	case EventEval:
		e.Eval = new(train.EvalMetrics)
		err = json.Unmarshal(b, e.Eval)
	case EventCheckpoint:
		e.Checkpoint = new(CheckpointSaved)
		err = json.Unmarshal(b, e.Checkpoint)
	case EventLog:
		var l struct {
			Line string `json:"line"`
		}
		err = json.Unmarshal(b, &l)
		e.Line = l.Line
	default:
		err = fmt.Errorf("event kind %q is not one of progress, step, eval, checkpoint, log", k.Kind)
	}
	return err
}
