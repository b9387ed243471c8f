package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuick runs the quick experiment end to end (every row, both sizes,
// two seeds, the speed measurements and the report), then checks what the
// doc promises: a second run redoes nothing, a run whose result is lost
// is finished from its checkpoint with the same numbers, one run's own
// command reproduces its losses exactly, and --doc fills the doc's
// generated section.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("trains 30 tiny models")
	}
	t.Chdir(".") // run moves to the repository root; put it back after
	out := t.TempDir()
	var log bytes.Buffer
	ctx := context.Background()
	if err := run(ctx, []string{"--quick", "--out", out}, &log); err != nil {
		t.Fatalf("quick experiment: %v\n%s", err, log.String())
	}
	exp, err := readExperiment("experiments/dense-vs-base/quick.yaml")
	if err != nil {
		t.Fatal(err)
	}
	results, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range exp.Groups {
		if !bytes.Contains(results, []byte(g.Title)) {
			t.Errorf("results.md has no table %q", g.Title)
		}
	}
	pngs, _ := filepath.Glob(filepath.Join(out, "figures", "*.png"))
	if len(pngs) != 5 { // retnet and mamba at two sizes, the ablations at one
		t.Errorf("figures: %v, want 5", pngs)
	}

	// Nothing is redone.
	log.Reset()
	if err := run(ctx, []string{"--quick", "--out", out}, &log); err != nil {
		t.Fatalf("second run: %v\n%s", err, log.String())
	}
	if n := strings.Count(log.String(), "(done before)"); n != 30 {
		t.Errorf("second run: %d runs done before, want 30:\n%s", n, log.String())
	}

	// Runs made with other settings are not taken for the experiment's.
	changed := t.TempDir()
	for _, f := range []string{"config.yaml", "quick.yaml"} {
		raw, err := os.ReadFile(filepath.Join("experiments/dense-vs-base", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(changed, f), bytes.Replace(raw, []byte("steps: 6"), []byte("steps: 7"), 1), 0o644)
	}
	err = run(ctx, []string{"--config", filepath.Join(changed, "quick.yaml"), "--out", out}, &log)
	if err == nil || !strings.Contains(err.Error(), "was started with other settings") {
		t.Errorf("changed settings over finished runs: error %v", err)
	}

	// A run that lost its result finishes through densessm train --resume.
	id := "s/denseretnet/seed1"
	dir := filepath.Join(out, "runs", filepath.FromSlash(id))
	before := readResult(t, dir)
	if err := os.Remove(filepath.Join(dir, "result.json")); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	if err := run(ctx, []string{"--quick", "--out", out, "--only", id}, &log); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, log.String())
	}
	after := readResult(t, dir)
	if after.HeldOut != before.HeldOut || after.MC != before.MC || after.FinalTrainLoss != before.FinalTrainLoss {
		t.Errorf("resumed run: %+v %+v %v, before %+v %+v %v", after.HeldOut, after.MC, after.FinalTrainLoss, before.HeldOut, before.MC, before.FinalTrainLoss)
	}

	// The run's own training command, into another directory, gives the
	// same losses bit for bit.
	args := strings.Fields(before.Commands[0])[1:]
	again := filepath.Join(t.TempDir(), "again")
	for i := range args {
		if args[i] == "--out" {
			args[i+1] = again
		}
	}
	cmd := exec.Command(filepath.Join(out, "bin", "densessm"), args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, b)
	}
	want, err := readMetricsFile(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readMetricsFile(filepath.Join(again, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("rerun: %d metrics, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameLoss(got[i].Loss, want[i].Loss) || !sameLoss(got[i].ValLoss, want[i].ValLoss) {
			t.Errorf("rerun, record %d: losses %v %v, want %v %v", i, ptr(got[i].Loss), ptr(got[i].ValLoss), ptr(want[i].Loss), ptr(want[i].ValLoss))
		}
	}

	// --doc replaces the generated section and nothing else.
	doc := filepath.Join(t.TempDir(), "report.md")
	beginMarker, endMarker := markers("quick.yaml")
	text := "# Report\n\nwritten by hand\n\n" + beginMarker + "\nold tables\n" + endMarker + "\n\nconclusion\n"
	if err := os.WriteFile(doc, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"--quick", "--out", out, "--doc", doc}, &log); err != nil {
		t.Fatal(err)
	}
	got2, _ := os.ReadFile(doc)
	s := string(got2)
	if strings.Contains(s, "old tables") || !strings.HasPrefix(s, "# Report\n\nwritten by hand\n\n"+beginMarker) ||
		!strings.HasSuffix(s, endMarker+"\n\nconclusion\n") || !strings.Contains(s, "](report/retnet-s.png)") {
		t.Errorf("doc:\n%s", s)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(doc), "report", "retnet-s.png")); err != nil {
		t.Error(err)
	}
}

func readResult(t *testing.T, dir string) result {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r result
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func sameLoss(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func ptr(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestExperimentFiles checks the committed experiment files and the
// parameter matching they ask for.
func TestExperimentFiles(t *testing.T) {
	for _, f := range []string{"config.yaml", "quick.yaml", "long.yaml", "lr1e-3.yaml"} {
		e, err := readExperiment(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.shapes(context.Background(), 4096); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestBadExperiments checks that a broken experiment file is refused with
// an error naming what is wrong.
func TestBadExperiments(t *testing.T) {
	good, err := os.ReadFile("quick.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown key", "seeds:", "colour: red\nseeds:", "field colour not found"},
		{"flag the experiment sets", "  steps: 6\n", "  steps: 6\n  seed: 3\n", `"seed" is set by the experiment`},
		{"no seeds", "seeds: [1, 2]", "seeds: []", "seeds, sizes and rows are required"},
		{"group of an unknown row", "seeds:", "groups: [{name: g, title: G, rows: [nope]}]\nseeds:", `no row "nope"`},
		{"parameters apart", "seeds:", "param-tolerance: 0.000001\nseeds:", "apart (param-tolerance"},
		{"missing base", "base: config.yaml", "base: nope.yaml", "nope.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg, _ := os.ReadFile("config.yaml")
			os.WriteFile(filepath.Join(dir, "config.yaml"), cfg, 0o644)
			path := filepath.Join(dir, "x.yaml")
			os.WriteFile(path, []byte(strings.Replace(string(good), tc.from, tc.to, 1)), 0o644)
			e, err := readExperiment(path)
			if err == nil {
				_, err = e.shapes(context.Background(), 4096)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}
