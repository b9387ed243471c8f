package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/internal/lossplot"
	"github.com/densessm/densessm/train"
)

// metricsLog appends one JSON record per line to a run's metrics.jsonl.
type metricsLog struct {
	f *os.File
	w *bufio.Writer
}

// openMetrics opens dir's metrics.jsonl for appending, first dropping the
// records after step (those of steps a resumed run will redo).
func openMetrics(dir string, step int) (*metricsLog, error) {
	path := filepath.Join(dir, metricsFile)
	if old, err := os.ReadFile(path); err == nil {
		var kept bytes.Buffer
		for line := range bytes.Lines(old) {
			var r struct{ Step int }
			if json.Unmarshal(line, &r) == nil && r.Step <= step && bytes.HasSuffix(line, []byte("\n")) {
				kept.Write(line)
			}
		}
		if err := atomicfile.WriteFile(path, kept.Bytes()); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &metricsLog{f: f, w: bufio.NewWriter(f)}, nil
}

func (l *metricsLog) write(v any) {
	b, _ := json.Marshal(v)
	l.w.Write(append(b, '\n'))
}

func (l *metricsLog) flush() { l.w.Flush() }

// Close flushes and closes the log.
func (l *metricsLog) Close() error {
	l.w.Flush()
	return l.f.Close()
}

// trainReporter shows a run's progress: a bar with the loss and rate on a
// terminal, a line every few steps otherwise.
type trainReporter struct {
	w            io.Writer
	bar          *progress
	steps, every int
	start        time.Time
	startStep    int
	lastVal      float64
	haveVal      bool
}

func newTrainReporter(cmd *cobra.Command, steps, from, every int) *trainReporter {
	r := &trainReporter{w: cmd.ErrOrStderr(), steps: steps, every: every, start: time.Now(), startStep: from}
	r.bar = newProgress(cmd, int64(steps), "training", false)
	r.bar.set(int64(from))
	return r
}

func (r *trainReporter) step(s train.StepMetrics) {
	r.bar.set(int64(s.Step)) // also the progress events under Execute
	if r.bar.drawn() {
		desc := fmt.Sprintf("loss %.4f", s.Loss)
		if r.haveVal {
			desc += fmt.Sprintf(" val %.4f", r.lastVal)
		}
		r.bar.describe(fmt.Sprintf("%s · %.0f tok/s", desc, s.TokensPerSec))
		return
	}
	if s.Step%r.every == 0 || s.Step == r.steps {
		done := s.Step - r.startStep
		eta := time.Duration(float64(time.Since(r.start)) / float64(done) * float64(r.steps-s.Step))
		r.printf("step %d/%d loss %.4f lr %.3g grad-norm %.3g %.0f tok/s eta %s",
			s.Step, r.steps, s.Loss, s.LR, s.GradNorm, s.TokensPerSec, eta.Round(time.Second))
	}
}

func (r *trainReporter) eval(e train.EvalMetrics) {
	r.lastVal, r.haveVal = e.Loss, true
	if !r.bar.drawn() {
		r.printf("step %d validation loss %.4f (%d tokens)", e.Step, e.Loss, e.Tokens)
	}
}

// printf prints a line, above the bar when there is one.
func (r *trainReporter) printf(format string, args ...any) {
	r.bar.clear()
	fmt.Fprintf(r.w, format+"\n", args...)
}

func (r *trainReporter) done() { r.bar.done() }

// plotLoss draws the training and validation losses of a metrics.jsonl as
// a PNG, written atomically.
func plotLoss(metricsPath, pngPath string) error {
	raw, err := os.ReadFile(metricsPath)
	if err != nil {
		return err
	}
	var trainXY, valXY plotter.XYs
	for line := range bytes.Lines(raw) {
		var r struct {
			Step    int      `json:"step"`
			Loss    *float64 `json:"loss"`
			ValLoss *float64 `json:"val_loss"`
		}
		if json.Unmarshal(line, &r) != nil {
			continue
		}
		if r.Loss != nil {
			trainXY = append(trainXY, plotter.XY{X: float64(r.Step), Y: *r.Loss})
		}
		if r.ValLoss != nil {
			valXY = append(valXY, plotter.XY{X: float64(r.Step), Y: *r.ValLoss})
		}
	}
	p := plot.New()
	p.Title.Text = "loss"
	p.X.Label.Text = "step"
	p.Y.Label.Text = "cross-entropy (nats/token)"
	p.Add(plotter.NewGrid())
	if len(trainXY) > 0 {
		raw, err := plotter.NewLine(trainXY)
		if err != nil {
			return err
		}
		raw.Color = gray
		smooth, err := plotter.NewLine(lossplot.MovingMean(trainXY, max(1, len(trainXY)/50)))
		if err != nil {
			return err
		}
		p.Add(raw, smooth)
		p.Legend.Add("train", raw)
		p.Legend.Add(fmt.Sprintf("train, mean of %d steps", max(1, len(trainXY)/50)), smooth)
	}
	if len(valXY) > 0 {
		l, pts, err := plotter.NewLinePoints(valXY)
		if err != nil {
			return err
		}
		l.Color = red
		pts.Color = red
		p.Add(l, pts)
		p.Legend.Add("validation", l, pts)
	}
	p.Legend.Top = true
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	return atomicfile.Write(pngPath, func(w io.Writer) error {
		_, err := wt.WriteTo(w)
		return err
	})
}

var (
	red  = color.RGBA{R: 200, G: 30, B: 30, A: 255}
	gray = color.RGBA{R: 190, G: 190, B: 190, A: 255}
)
