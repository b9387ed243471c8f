package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/internal/lossplot"
)

// markers returns the lines around the section of a doc that the report
// of the experiment file named config (config.yaml, ...) replaces.
func markers(config string) (begin, end string) {
	return fmt.Sprintf("<!-- dense-vs-base %s: generated below, do not edit -->", config),
		fmt.Sprintf("<!-- dense-vs-base %s: generated above -->", config)
}

// report turns the runs' results into Markdown tables and loss curves.
type report struct {
	exp     *experiment
	shapes  map[string]shape
	results []result
	benches map[string]benchResult
	out     string
	config  string // the experiment file's name, which names the doc's section
}

// stats are one row's results at one size over its seeds.
type stats struct {
	n                      int
	nll, ppl, acc, accNorm []float64
	trainSeconds           []float64
	nllBySeed              map[uint64]float64 // the held-out loss of each seed's run
}

func (r *report) stats(size, row string) *stats {
	s := &stats{nllBySeed: map[uint64]float64{}}
	for _, res := range r.results {
		if res.Size != size || res.Row != row {
			continue
		}
		s.n++
		s.nll = append(s.nll, res.HeldOut.NLL)
		s.nllBySeed[res.Seed] = res.HeldOut.NLL
		s.ppl = append(s.ppl, res.HeldOut.Perplexity)
		s.acc = append(s.acc, res.MC.Acc)
		s.accNorm = append(s.accNorm, res.MC.AccNorm)
		s.trainSeconds = append(s.trainSeconds, res.TrainSeconds)
	}
	return s
}

// write writes OUT/results.md and OUT/figures, and when doc is not empty
// puts the same tables into doc's section for this experiment file
// (between the lines markers gives) and the figures in a folder beside it
// named after it.
func (r *report) write(doc string) error {
	figDir := filepath.Join(r.out, "figures")
	md, err := r.markdown(figDir, "figures")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(r.out, "results.md"), []byte(md)); err != nil {
		return err
	}
	if doc == "" {
		return nil
	}
	base := strings.TrimSuffix(filepath.Base(doc), filepath.Ext(doc))
	md, err = r.markdown(filepath.Join(filepath.Dir(doc), base), base)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	beginMarker, endMarker := markers(r.config)
	i, j := bytes.Index(old, []byte(beginMarker)), bytes.Index(old, []byte(endMarker))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no generated section (a line %q, later a line %q)", doc, beginMarker, endMarker)
	}
	var b bytes.Buffer
	b.Write(old[:i+len(beginMarker)])
	b.WriteString("\n" + md)
	b.Write(old[j:])
	return atomicfile.WriteFile(doc, b.Bytes())
}

// markdown renders the tables, drawing the figures into figDir, which the
// Markdown links as figLink.
func (r *report) markdown(figDir, figLink string) (string, error) {
	if err := os.MkdirAll(figDir, 0o755); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("\nSeeds: %s per row. Mean ± sample standard deviation over the seeds; Δ is the difference of the means from the group's first row, ± its standard error (√(s₁²/n₁ + s₂²/n₂)), and Δ/σ divides it by the first row's seed-to-seed standard deviation. A seed sets both the initial weights and the order of the training batches, so runs of one seed saw the same batches: paired Δ is the mean of the per-seed differences from the first row, ± its standard error (their standard deviation / √n), which leaves out the noise of the data order.\n", joinInts(r.exp.Seeds))
	for _, g := range r.exp.Groups {
		for _, s := range r.exp.Sizes {
			if !g.inSize(s.Name) || r.stats(s.Name, g.Rows[0]).n == 0 {
				continue
			}
			w("\n### %s, size %s\n\n", g.Title, s.Name)
			w("| model | parameters (trained) | matched by | held-out loss (nats/token) | perplexity | Δ loss | Δ/σ | paired Δ | MC acc | MC acc_norm |\n")
			w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
			ref := r.stats(s.Name, g.Rows[0])
			for _, name := range g.Rows {
				st := r.stats(s.Name, name)
				if st.n == 0 {
					continue
				}
				sh := r.shapes[runKey(s.Name, name)]
				delta, ratio, paired := "", "", ""
				if name != g.Rows[0] {
					var ds []float64
					for seed, x := range st.nllBySeed {
						if y, ok := ref.nllBySeed[seed]; ok {
							ds = append(ds, x-y)
						}
					}
					if len(ds) > 0 {
						paired = fmt.Sprintf("%+.4f ± %.4f", mean(ds), math.Sqrt(variance(ds)/float64(len(ds))))
					}
					d := mean(st.nll) - mean(ref.nll)
					se := math.Sqrt(variance(st.nll)/float64(st.n) + variance(ref.nll)/float64(ref.n))
					delta = fmt.Sprintf("%+.4f ± %.4f", d, se)
					if sd := math.Sqrt(variance(ref.nll)); sd > 0 {
						ratio = fmt.Sprintf("%+.1f", d/sd)
					}
				}
				matched := sh.Matched
				if matched == "" {
					matched = "—"
				}
				w("| %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, thousands(sh.Parameters), thousands(sh.Trained), matched,
					pm(st.nll, 4), pm(st.ppl, 2), delta, ratio, paired, pm(st.acc, 3), pm(st.accNorm, 3))
			}
			w("\n| model | training tok/s | training peak RSS | decode tok/s | decode peak RSS | training wall time per run |\n")
			w("|---|---:|---:|---:|---:|---:|\n")
			for _, name := range g.Rows {
				st := r.stats(s.Name, name)
				bn, ok := r.benches[runKey(s.Name, name)]
				if st.n == 0 || !ok {
					continue
				}
				w("| %s | %.0f | %s | %.0f | %s | %s s |\n", name, *bn.Train.TrainTokensPS, mib(bn.TrainPeakRSS),
					*bn.Decode.DecodeTokensPS, mib(bn.DecodePeakRSS), pm(st.trainSeconds, 0))
			}
			fig := fmt.Sprintf("%s-%s.png", g.Name, s.Name)
			if err := r.plot(filepath.Join(figDir, fig), g, s.Name); err != nil {
				return "", err
			}
			w("\n![%s, size %s: loss curves of every seed](%s/%s)\n", g.Title, s.Name, figLink, fig)
		}
	}
	w("\n### Shapes\n\n| size | model | config | parameters | trained | embedding |\n|---|---|---|---:|---:|---:|\n")
	for _, s := range r.exp.Sizes {
		for _, row := range r.exp.Rows {
			sh, ok := r.shapes[runKey(s.Name, row.Name)]
			if !ok || r.stats(s.Name, row.Name).n == 0 {
				continue
			}
			cfg, err := json.Marshal(sh.Model)
			if err != nil {
				return "", err
			}
			w("| %s | %s | `%s` | %s | %s | %s |\n", s.Name, row.Name, cfg, thousands(sh.Parameters), thousands(sh.Trained), thousands(sh.Embedding))
		}
	}
	w("\n### Every run\n\n| run | tokens | final training loss | trainer's validation loss | held-out loss | MC acc | wall s | training peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, res := range r.results {
		w("| %s | %s | %.4f | %.4f | %.4f | %.3f | %.0f | %s |\n", res.ID, thousands(int(res.Tokens)), res.FinalTrainLoss, res.ValLoss, res.HeldOut.NLL, res.MC.Acc, res.TrainSeconds, mib(res.TrainPeakRSS))
	}
	if len(r.results) > 0 {
		w("\nThe commands of run %s (every run's are in its result.json):\n\n```sh\n%s\n```\n", r.results[0].ID, strings.Join(r.results[0].Commands, "\n"))
	}
	if len(r.results) > 0 {
		if bn, ok := r.benches[runKey(r.results[0].Size, r.results[0].Row)]; ok {
			w("\nThe speed and memory of %s/%s:\n\n```sh\n%s\n```\n", bn.Size, bn.Row, strings.Join(bn.Commands, "\n"))
		}
	}
	return b.String(), nil
}

// plot draws the loss curves of a group's rows at one size: the training
// loss (a moving mean) of every seed as a line and the trainer's
// validation losses as points, one colour a row.
func (r *report) plot(path string, g group, size string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, size %s", g.Title, size)
	p.X.Label.Text = "tokens"
	p.X.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		ticks := plot.DefaultTicks{}.Ticks(lo, hi)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = thousands(int(ticks[i].Value))
			}
		}
		return ticks
	})
	p.Y.Label.Text = "loss (nats/token)"
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	yMax := math.Inf(-1)
	for ci, name := range g.Rows {
		col := palette[ci%len(palette)]
		labelled := false
		for _, res := range r.results {
			if res.Size != size || res.Row != name {
				continue
			}
			ms, err := readMetricsFile(filepath.Join(r.out, "runs", filepath.FromSlash(res.ID), "metrics.jsonl"))
			if err != nil {
				return err
			}
			var train, val plotter.XYs
			tokensPerStep := float64(res.Tokens) / float64(max(1, res.Steps))
			for _, m := range ms {
				if m.Loss != nil {
					train = append(train, plotter.XY{X: float64(m.Tokens), Y: *m.Loss})
				}
				if m.ValLoss != nil {
					val = append(val, plotter.XY{X: float64(m.Step) * tokensPerStep, Y: *m.ValLoss})
				}
			}
			train = lossplot.MovingMean(train, max(1, len(train)/25))
			if len(train) > 0 {
				yMax = max(yMax, train[len(train)/8].Y)
			}
			line, err := plotter.NewLine(train)
			if err != nil {
				return err
			}
			line.Color = col
			pts, err := plotter.NewScatter(val)
			if err != nil {
				return err
			}
			pts.Color, pts.Shape = col, draw.CircleGlyph{}
			p.Add(line, pts)
			if !labelled {
				p.Legend.Add(name, line)
				labelled = true
			}
		}
	}
	if !math.IsInf(yMax, -1) {
		p.Y.Max = yMax
	}
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, buf.Bytes())
}

// palette has one colour per row of a group.
var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	color.RGBA{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff},
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// variance is the sample variance (0 for fewer than two values).
func variance(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	m, s := mean(xs), 0.0
	for _, x := range xs {
		s += (x - m) * (x - m)
	}
	return s / float64(len(xs)-1)
}

// pm formats mean ± standard deviation with prec decimals.
func pm(xs []float64, prec int) string {
	return fmt.Sprintf("%.*f ± %.*f", prec, mean(xs), prec, math.Sqrt(variance(xs)))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// thousands writes n with separators: 1,234,567.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString(",")
		}
		b.WriteRune(c)
	}
	return b.String()
}

func joinInts(xs []uint64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprint(x))
	}
	return strings.Join(s, ", ")
}
