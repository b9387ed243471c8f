package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/densessm/densessm/train"
)

// eventLog collects the events of an Execute call.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) of(kind string) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// waitGoroutines waits a little for the goroutines to come back to at most
// n, and fails the test if they do not.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left running, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExecuteVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if err := Execute(t.Context(), []string{"version"}, Options{Stdout: &out, Stderr: &errb}); err != nil {
		t.Fatal(err)
	}
	if out.String() != Version()+"\n" || !strings.HasPrefix(out.String(), "densessm ") || errb.Len() != 0 {
		t.Errorf("version printed %q, stderr %q; Version() %q", out.String(), errb.String(), Version())
	}
	// Nil writers discard; nil args are no arguments, not os.Args.
	if err := Execute(t.Context(), []string{"version"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Execute(t.Context(), nil, Options{}); err != nil {
		t.Fatalf("no arguments (help): %v", err)
	}
}

func TestExecuteBadCommand(t *testing.T) {
	for _, args := range [][]string{{"no-such-command"}, {"version", "--no-such-flag"}, {"inspect", filepath.Join(t.TempDir(), "missing.safetensors")}} {
		var out, errb bytes.Buffer
		err := Execute(t.Context(), args, Options{Stdout: &out, Stderr: &errb})
		if err == nil || errb.Len() != 0 || out.Len() != 0 {
			t.Errorf("%v: error %v, stdout %q, stderr %q; want an error and nothing printed", args, err, out.String(), errb.String())
		}
	}
}

// TestExecuteTrainEvents trains a tiny model through Execute with Events:
// steps in order, checkpoints, progress of the tokenizer and the corpus,
// the lines of stderr as log events, and nothing left running.
func TestExecuteTrainEvents(t *testing.T) {
	args := trainSetup(t, 12)
	dir := filepath.Join(t.TempDir(), "run")
	before := runtime.NumGoroutine()
	var log eventLog
	var errb bytes.Buffer
	err := Execute(t.Context(), args(dir), Options{Stderr: &errb, Events: func(e Event) {
		if _, err := json.Marshal(e); err != nil {
			t.Errorf("event %+v: %v", e, err)
		}
		log.add(e)
	}})
	if err != nil {
		t.Fatalf("train: %v\n%s", err, errb.String())
	}
	steps := log.of(EventStep)
	if len(steps) != 12 {
		t.Fatalf("%d step events, want 12", len(steps))
	}
	for i, e := range steps {
		if e.Step == nil || e.Step.Step != i+1 || !(e.Step.Loss > 0) {
			t.Fatalf("step event %d: %+v", i, e.Step)
		}
	}
	var saved []int
	for _, e := range log.of(EventCheckpoint) {
		saved = append(saved, e.Checkpoint.Step)
		if _, err := os.Stat(e.Checkpoint.Dir); err != nil {
			t.Errorf("checkpoint event %+v: %v", e.Checkpoint, err)
		}
	}
	if len(saved) != 2 || saved[0] != 10 || saved[1] != 12 {
		t.Errorf("checkpoints of steps %v, want [10 12]", saved)
	}
	if len(log.of(EventEval)) == 0 {
		t.Error("no eval event")
	}
	finals := map[string]bool{}
	for _, e := range log.of(EventProgress) {
		if e.Progress.Final {
			finals[e.Progress.Desc] = true
			if e.Progress.Desc == "training" && e.Progress.Done != 12 {
				t.Errorf("final training progress at %d of %d steps, want 12", e.Progress.Done, e.Progress.Total)
			}
		}
	}
	for _, desc := range []string{"reading corpus", "tokenizer merges", "tokenizing", "training"} {
		if !finals[desc] {
			t.Errorf("no final progress event of %q (finals: %v)", desc, finals)
		}
	}
	var lines []string
	for _, e := range log.of(EventLog) {
		lines = append(lines, e.Line)
	}
	if strings.Join(lines, "\n")+"\n" != errb.String() || !strings.Contains(errb.String(), "done: 12 steps") {
		t.Errorf("log events %q, stderr %q", lines, errb.String())
	}
	waitGoroutines(t, before)
}

// TestExecuteTrainCancel cancels a training run through its context: it
// stops with the interrupted error, a checkpoint of its last step, and
// resumes from it to the end.
func TestExecuteTrainCancel(t *testing.T) {
	args := trainSetup(t, 30)
	dir := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var cancelled time.Time
	err := Execute(ctx, args(dir), Options{Events: func(e Event) {
		if e.Kind == EventStep && e.Step.Step == 3 {
			cancelled = time.Now()
			cancel()
		}
	}})
	if cancelled.IsZero() {
		t.Fatalf("never reached step 3: %v", err)
	}
	if took := time.Since(cancelled); took > 20*time.Second {
		t.Errorf("returned %s after the cancel", took)
	}
	var intr *train.Interrupted
	if !errors.As(err, &intr) || !errors.Is(err, context.Canceled) || intr.Step != 3 || intr.Checkpoint == "" {
		t.Fatalf("error %v, want an interruption after step 3 with a checkpoint", err)
	}
	if _, step, ok, err := train.Latest(dir); err != nil || !ok || step != 3 {
		t.Fatalf("newest checkpoint: step %d, %v, %v", step, ok, err)
	}
	var log eventLog
	if err := Execute(t.Context(), []string{"train", "--resume", "--out", dir}, Options{Events: log.add}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	steps := log.of(EventStep)
	if len(steps) != 27 || steps[0].Step.Step != 4 || steps[26].Step.Step != 30 {
		t.Fatalf("resumed run: %d steps from %+v", len(steps), steps[0].Step)
	}
}

// TestExecuteConcurrent runs commands from several goroutines at once:
// version, tokenize and two training runs.
func TestExecuteConcurrent(t *testing.T) {
	const tok = "../../tokenizer/testdata/gpt2.json"
	text := strings.Repeat("Hello, wörld! func main() {}\n", 100)
	trainArgs := trainSetup(t, 6)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			var out, errb bytes.Buffer
			var args []string
			switch i % 3 {
			case 0:
				args = []string{"version"}
			case 1:
				args = []string{"tokenize", "--tokenizer", tok, "--count"}
			case 2:
				args = append(trainArgs(filepath.Join(t.TempDir(), "run")), "--log-every", "1")
				out.WriteString("(none)")
			}
			var log eventLog
			err := Execute(t.Context(), args, Options{Stdin: strings.NewReader(text), Stdout: &out, Stderr: &errb, Events: log.add})
			if err != nil || out.Len() == 0 {
				t.Errorf("%v: %v, stdout %q, stderr %q", args, err, out.String(), errb.String())
			}
		})
	}
	wg.Wait()
}

func TestEventJSON(t *testing.T) {
	for _, e := range []Event{
		{Kind: EventProgress, Progress: &Progress{Desc: "tokenizing", Done: 3, Total: 9, Bytes: true}},
		{Kind: EventStep, Step: &train.StepMetrics{Step: 4, Loss: 2.5, LR: 1e-3, Tokens: 100}},
		{Kind: EventEval, Eval: &train.EvalMetrics{Step: 10, Loss: 2, Tokens: 64}},
		{Kind: EventCheckpoint, Checkpoint: &CheckpointSaved{Step: 10, Dir: "run/checkpoints/step-10"}},
		{Kind: EventLog, Line: "training"},
	} {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var flat map[string]any
		if err := json.Unmarshal(b, &flat); err != nil || flat["kind"] != e.Kind {
			t.Fatalf("%s: %s: %v", e.Kind, b, err)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(b) {
			t.Errorf("%s read back as %s", b, again)
		}
		t.Logf("%s", b)
	}
	b, _ := json.Marshal(Event{Kind: EventStep, Step: &train.StepMetrics{Step: 7, Loss: 1}})
	if !strings.HasPrefix(string(b), `{"kind":"step","step":7,"loss":1,`) {
		t.Errorf("step event JSON %s", b)
	}
}
