package pybind

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/densessm/densessm/api"
)

// Job is work running on a goroutine: a generation, a forward pass, a
// training run. The Python layer polls it with Poll in short waits (so
// that Ctrl-C reaches the interpreter), handing its events to the caller,
// and cancels it on KeyboardInterrupt.
type Job struct {
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{} // a token when events arrive

	mu      sync.Mutex
	events  []json.RawMessage
	result  any
	err     error
	seconds float64 // the job's wall time, once done
}

// startJob runs work on a goroutine with a cancellable context. work sends
// events with emit (JSON values) and returns its result (a JSON value) or
// an error; panics become errors.
func startJob(work func(ctx context.Context, emit func(any)) (any, error)) *Job {
	ctx, cancel := context.WithCancel(context.Background())
	j := &Job{cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	go func() {
		defer close(j.done)
		defer cancel()
		start := time.Now()
		result, err := func() (result any, err error) {
			defer api.Recover(&err)
			return work(ctx, j.emit)
		}()
		j.mu.Lock()
		j.result, j.err, j.seconds = result, err, time.Since(start).Seconds()
		j.mu.Unlock()
	}()
	return j
}

// emit queues an event for Poll.
func (j *Job) emit(event any) {
	b, err := json.Marshal(event)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"kind": "error", "error": err.Error()})
	}
	j.mu.Lock()
	j.events = append(j.events, b)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// pollResult is what Poll returns, as JSON.
type pollResult struct {
	Events  []json.RawMessage `json:"events"`
	Done    bool              `json:"done"`
	Result  any               `json:"result,omitempty"`
	Seconds float64           `json:"seconds,omitempty"`
}

// Poll waits up to timeoutMs milliseconds (0: not at all) for events or
// the end of the job and returns, as JSON, {"events": [...], "done": bool,
// "result": ..., "seconds": s}: the events since the last Poll, and once
// the job has ended and every event has been returned, done, its result
// and how long it ran (wall time in Go, for measuring what the rest
// costs). A job that
// failed returns its error instead of done (once the events before it have
// been returned).
func (j *Job) Poll(timeoutMs int) (string, error) {
	if timeoutMs > 0 {
		t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
		select {
		case <-j.done:
		case <-j.wake:
		case <-t.C:
		}
		t.Stop()
	}
	var r pollResult
	j.mu.Lock()
	r.Events, j.events = j.events, nil
	j.mu.Unlock()
	select {
	case <-j.done:
		if len(r.Events) == 0 {
			if j.err != nil {
				return "", j.err
			}
			r.Done, r.Result, r.Seconds = true, j.result, j.seconds
		}
	default:
	}
	if r.Events == nil {
		r.Events = []json.RawMessage{}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("job result: %w", err)
	}
	return string(b), nil
}

// Cancel asks the job to stop (its context is cancelled); Poll then
// reports how it ended, usually with an error wrapping context.Canceled.
func (j *Job) Cancel() { j.cancel() }

// Done reports whether the job has ended.
func (j *Job) Done() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}
