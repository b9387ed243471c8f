package pybind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// poll polls j until it is done and returns its events and result.
func poll(t *testing.T, j *Job) (events []map[string]any, result any, err error) {
	t.Helper()
	for range 1000 {
		s, err := j.Poll(50)
		if err != nil {
			return events, nil, err
		}
		var r struct {
			Events []map[string]any `json:"events"`
			Done   bool             `json:"done"`
			Result any              `json:"result"`
		}
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			t.Fatal(err)
		}
		events = append(events, r.Events...)
		if r.Done {
			return events, r.Result, nil
		}
	}
	t.Fatal("job did not end")
	return nil, nil, nil
}

func TestJobEventsThenResult(t *testing.T) {
	j := startJob(func(ctx context.Context, emit func(any)) (any, error) {
		for i := range 5 {
			emit(map[string]int{"i": i})
		}
		return "done", nil
	})
	events, result, err := poll(t, j)
	if err != nil || result != "done" || len(events) != 5 || events[4]["i"] != 4.0 {
		t.Fatalf("events %v, result %v, err %v", events, result, err)
	}
}

func TestJobErrorAfterEvents(t *testing.T) {
	j := startJob(func(ctx context.Context, emit func(any)) (any, error) {
		emit("before")
		return nil, errors.New("it broke")
	})
	<-j.done
	s, err := j.Poll(0)
	if err != nil || !strings.Contains(s, "before") {
		t.Fatalf("first poll: %q, %v: want the event before the error", s, err)
	}
	if _, err := j.Poll(0); err == nil || err.Error() != "it broke" {
		t.Fatalf("second poll: %v, want the job's error", err)
	}
}

func TestJobCancelAndPanic(t *testing.T) {
	j := startJob(func(ctx context.Context, emit func(any)) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if j.Done() {
		t.Fatal("done before it was cancelled")
	}
	j.Cancel()
	if _, _, err := poll(t, j); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled job: %v", err)
	}
	j = startJob(func(context.Context, func(any)) (any, error) { panic("boom") })
	if _, _, err := poll(t, j); !errors.Is(err, api.ErrInternal) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panicking job: %v, want an ErrInternal error with the panic", err)
	}
}

func TestSplitBatch(t *testing.T) {
	seqs, err := splitBatch([]int32{1, 2, 3, 4, 5, 6}, 2)
	if err != nil || len(seqs) != 2 || seqs[1][0] != 4 || cap(seqs[0]) != 3 {
		t.Fatalf("%v %v", seqs, err)
	}
	for _, c := range []struct {
		n, batch int
	}{{0, 1}, {5, 2}, {4, 0}} {
		if _, err := splitBatch(make([]int32, c.n), c.batch); !errors.Is(err, api.ErrShape) {
			t.Errorf("%d ids in %d sequences: %v, want ErrShape", c.n, c.batch, err)
		}
	}
}

func TestSplitLens(t *testing.T) {
	seqs, err := splitLens([]int32{1, 2, 3, 4, 5, 6}, "[1,3,2]")
	if err != nil || len(seqs) != 3 || len(seqs[1]) != 3 || seqs[2][0] != 5 || cap(seqs[0]) != 1 {
		t.Fatalf("%v %v", seqs, err)
	}
	for _, lens := range []string{"[]", "[0,6]", "[2,2]", "[4,4]", "[7]", "[-1,7]"} {
		if _, err := splitLens(make([]int32, 6), lens); !errors.Is(err, api.ErrShape) {
			t.Errorf("6 ids in %s: %v, want ErrShape", lens, err)
		}
	}
	if _, err := splitLens(make([]int32, 6), "x"); !errors.Is(err, api.ErrConfig) {
		t.Errorf("lens x: %v, want ErrConfig", err)
	}
}

// TestForwardRagged checks that the logits of sequences of different
// lengths (through the copying path) are each sequence's alone, zero past
// its end, and that checkRagged refuses them for a model that is not
// packed.
func TestForwardRagged(t *testing.T) {
	m := newMamba(t, 300, 16, 1)
	defer m.Close()
	seqs := [][]int32{{1, 2, 3}, {4, 5, 6, 7, 8}, {9}}
	buf, err := forward(context.Background(), m.m, seqs, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.release()
	const T, V = 5, 300
	if len(buf.data) != len(seqs)*T*V {
		t.Fatalf("%d logits, want %d", len(buf.data), len(seqs)*T*V)
	}
	for b, seq := range seqs {
		alone, err := m.m.Forward(context.Background(), [][]int32{seq}, api.Form{})
		if err != nil {
			t.Fatal(err)
		}
		w := api.Float32s(alone)
		for i := range T * V {
			got, want := buf.data[b*T*V+i], float32(0)
			if i < len(w) {
				want = w[i]
			}
			if d := math.Abs(float64(got - want)); d > 2e-5*(1+math.Abs(float64(want))) {
				t.Fatalf("sequence %d, element %d = %g, want %g", b, i, got, want)
			}
		}
	}
	if err := checkRagged(m.m, seqs); err != nil {
		t.Errorf("a packed model: %v", err)
	}
	if err := checkRagged(unpacked{m.m}, seqs); !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), "[3 5 1]") {
		t.Errorf("a model that is not packed: %v, want ErrUnsupported naming the lengths", err)
	}
	if err := checkRagged(unpacked{m.m}, seqs[:1]); err != nil {
		t.Errorf("one sequence, a model that is not packed: %v", err)
	}
}

// unpacked is a model whose Info says it does not take packed batches.
type unpacked struct{ api.Model }

func (u unpacked) Info() api.Info {
	i := u.Model.Info()
	i.Packed = false
	return i
}

func TestGenerateOptions(t *testing.T) {
	var o generateOptions
	def, err := o.textOptions()
	if err != nil || def.MaxTokens != 200 || def.Temperature != 0.8 || def.TopK != 40 || def.TopP != 0.95 || def.MinP != 0.05 {
		t.Fatalf("defaults %+v, %v: want the generate command's", def, err)
	}
	zero, temp := 0, -1.0
	o.MaxNewTokens = &zero
	if _, err := o.textOptions(); !errors.Is(err, api.ErrConfig) {
		t.Errorf("max_new_tokens 0: %v", err)
	}
	o = generateOptions{Temperature: &temp}
	if _, err := o.textOptions(); !errors.Is(err, api.ErrConfig) {
		t.Errorf("temperature -1: %v", err)
	}
	m := &Model{}
	if _, err := m.Generate(`["x"]`, `{"temprature": 1}`, false, nil, nil); err == nil || !strings.Contains(err.Error(), "temprature") {
		t.Errorf("unknown option: %v, want an error naming it", err)
	}
	if _, err := m.Generate(`[]`, ``, false, nil, nil); !errors.Is(err, api.ErrConfig) {
		t.Errorf("no prompts: %v", err)
	}
}

// newMamba returns a random two-layer Mamba of the given vocabulary and
// hidden size on threads CPU threads (0: every core).
func newMamba(tb testing.TB, vocab, hidden, threads int) *Model {
	tb.Helper()
	cfg := fmt.Sprintf(`{"model_type":"mamba","vocab_size":%d,"hidden_size":%d,"num_hidden_layers":2,"state_size":8,"expand":2,"time_step_rank":4}`, vocab, hidden)
	m, err := InitModel("mamba", cfg, "cpu", "", 1, threads)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestForwardIntoCMemory checks that logits computed straight into C
// memory equal the model's Forward bit for bit, and that the copying path
// (the recurrent form) agrees with it.
func TestForwardIntoCMemory(t *testing.T) {
	m := newMamba(t, 300, 16, 1)
	defer m.Close()
	seqs := [][]int32{{1, 2, 3, 4}, {5, 6, 7, 8}}
	want, err := m.m.Forward(context.Background(), seqs, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []api.Form{{}, {Mode: api.Recurrent}} {
		buf, err := forward(context.Background(), m.m, seqs, f)
		if err != nil {
			t.Fatal(err)
		}
		w := api.Float32s(want)
		tol := 0.0 // the parallel form into C memory is Forward itself
		if f.Mode != api.Parallel {
			tol = 1e-4
		}
		for i := range w {
			if d := math.Abs(float64(buf.data[i] - w[i])); d > tol*(1+math.Abs(float64(w[i]))) {
				t.Fatalf("%v: element %d = %g, want %g", f.Mode, i, buf.data[i], w[i])
			}
		}
		buf.release()
	}
	if _, err := forward(context.Background(), m.m, [][]int32{{1, 300}}, api.Form{}); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("id past the vocabulary: %v", err)
	}
}

// BenchmarkLogits times the logits of 1024 tokens of a model with a
// 50,280-token vocabulary (206 MB of float32s), as Go's own Forward
// returns them (on the Go heap) and as the binding computes them into C
// memory for NumPy: the difference is what the memory outside the Go heap
// costs (bench/python_overhead.py adds the Python side).
func BenchmarkLogits(b *testing.B) {
	m := newMamba(b, 50280, 64, 0)
	defer m.Close()
	ids := make([]int32, 1024)
	for i := range ids {
		ids[i] = int32(i * 37 % 50280)
	}
	seqs := [][]int32{ids}
	ctx := context.Background()
	b.Run("go-heap", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.m.Forward(ctx, seqs, api.Form{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("c-memory", func(b *testing.B) {
		for b.Loop() {
			buf, err := forward(ctx, m.m, seqs, api.Form{})
			if err != nil {
				b.Fatal(err)
			}
			buf.release()
		}
	})
}
