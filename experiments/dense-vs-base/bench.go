package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// benchResult is the speed and memory of one row at one size, measured by
// `densessm bench model` with nothing else running: a training step
// (forward, backward, update) and decoding, each in a process of its own
// so that each peak resident memory is its own.
type benchResult struct {
	Size     string   `json:"size"`
	Row      string   `json:"row"`
	Commands []string `json:"commands"`
	// The JSON of the two commands.
	Train  benchModel `json:"train"`
	Decode benchModel `json:"decode"`
	// TrainPeakRSS and DecodePeakRSS are the processes' peak resident
	// memory in bytes (Go runtime and program included).
	TrainPeakRSS  int64 `json:"train_peak_rss"`
	DecodePeakRSS int64 `json:"decode_peak_rss"`
}

// benchModel is the part of `densessm bench model`'s JSON the report uses.
type benchModel struct {
	Parameters     int      `json:"parameters"`
	WeightBytes    int64    `json:"weight_bytes"`
	DecodeTokensPS *float64 `json:"decode_tokens_per_s"`
	TrainTokensPS  *float64 `json:"train_tokens_per_s"`
}

// bench measures one row at one size unless OUT/bench holds it already.
func (r *runner) bench(ctx context.Context, sizeName, rowName string) (benchResult, error) {
	dir := filepath.Join(r.out, "bench", sizeName, rowName)
	resPath := filepath.Join(dir, "result.json")
	var res benchResult
	if raw, err := os.ReadFile(resPath); err == nil {
		return res, json.Unmarshal(raw, &res)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	cfgPath := filepath.Join(dir, "config.json")
	if err := writeJSON(cfgPath, r.shapes[runKey(sizeName, rowName)].Model); err != nil {
		return res, err
	}
	b := r.exp.Bench
	common := []string{"bench", "model", "--arch", r.exp.row(rowName).Arch, "--config", r.rel(cfgPath), "--prefill", "0", "--threads", strconv.Itoa(r.exp.Threads)}
	train := append(common[:len(common):len(common)], "--decode", "0", "--train-step", "--train-batch", strconv.Itoa(b.TrainBatch),
		"--train-seq", strconv.Itoa(b.TrainSeq), "--reps", strconv.Itoa(b.Reps))
	decode := append(common[:len(common):len(common)], "--decode", strconv.Itoa(b.Decode))
	res = benchResult{Size: sizeName, Row: rowName, Commands: []string{commandLine(train), commandLine(decode)}}
	var err error
	if res.TrainPeakRSS, err = r.densessm(ctx, filepath.Join(dir, "train.log"), &res.Train, train...); err != nil {
		return res, err
	}
	if res.DecodePeakRSS, err = r.densessm(ctx, filepath.Join(dir, "decode.log"), &res.Decode, decode...); err != nil {
		return res, err
	}
	if res.Train.TrainTokensPS == nil || res.Decode.DecodeTokensPS == nil {
		return res, fmt.Errorf("bench %s/%s: a rate is missing (see %s)", sizeName, rowName, dir)
	}
	return res, writeJSON(resPath, res)
}
