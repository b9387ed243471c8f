package pybind

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/cli"
)

// Run starts a job that runs a densessm command line in this process,
// exactly as the densessm command does (argsJSON: a JSON array of the
// arguments after the program name, e.g. ["train", "--config", "t.yaml"]).
// The job sends the command's progress events (cli.Event's JSON: progress
// bars, training steps, validations, checkpoints, the lines it prints on
// stderr) and its result is {"stdout": what the command printed}.
// Cancelling the job stops the command as Ctrl-C stops densessm (train
// saves a checkpoint of its last step first).
func Run(argsJSON string) (*Job, error) {
	var args []string
	if err := json.Unmarshal([]byte(argsJSON), &args); err != nil {
		return nil, fmt.Errorf("command arguments: %v: %w", err, api.ErrConfig)
	}
	return startJob(func(ctx context.Context, emit func(any)) (any, error) {
		var stdout bytes.Buffer
		err := cli.Execute(ctx, args, cli.Options{
			Stdout: &stdout,
			Events: func(e cli.Event) { emit(e) },
		})
		if err != nil {
			return nil, err
		}
		return map[string]string{"stdout": stdout.String()}, nil
	}), nil
}
