package host

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/densessm/densessm/api"
	pb "github.com/densessm/densessm/plugins/proto"
)

// BenchmarkPluginOverhead measures what the plugin boundary adds to a
// decode step and to a 1024-token forward pass: the same model in process
// and through densessm-backend-cpu, timed in alternating rounds (timings on
// a shared machine drift by tens of percent within minutes), reported as
// the medians of each and of the differences. "narrow" has mamba-130m's
// vocabulary (50,280: the logits that cross, 201 KB per step and 206 MB
// per forward) and one narrow layer, so that the transport is large next
// to the model's own work; "mamba-130m" is the whole model
// (bench/configs/mamba-130m.json), on 2 threads. Run with -benchtime 1x:
// one run is the whole measurement.
func BenchmarkPluginOverhead(b *testing.B) {
	p := openPlugin(b, "densessm-backend-cpu", testOptions(b))
	b.Run("narrow", func(b *testing.B) {
		overhead(b, p, []byte(`{"vocab_size": 50280, "hidden_size": 64, "num_hidden_layers": 1, "state_size": 8}`), 1, 7, 200)
	})
	b.Run("mamba-130m", func(b *testing.B) {
		cfg, err := os.ReadFile("../../bench/configs/mamba-130m.json")
		if err != nil {
			b.Fatal(err)
		}
		overhead(b, p, cfg, 2, 5, 20)
	})
}

// overhead times a mamba model of cfgJSON in process and in p, in rounds
// alternating which goes first, each round steps decode steps and one
// forward of 1024 tokens.
func overhead(b *testing.B, p *Plugin, cfgJSON []byte, threads, rounds, steps int) {
	arch, err := api.LookupArchitecture("mamba")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := arch.ParseConfig(cfgJSON)
	if err != nil {
		b.Fatal(err)
	}
	o := api.BuildOptions{BackendOptions: api.BackendOptions{Threads: threads}, Seed: 1}
	local, err := arch.New(b.Context(), cfg, o)
	if err != nil {
		b.Fatal(err)
	}
	o.Backend = "cpu-plugin"
	remote, err := p.Architecture("mamba").New(b.Context(), cfg, o)
	if err != nil {
		b.Fatal(err)
	}
	defer remote.Close()
	models := []api.Model{local, remote}
	states := make([]api.State, 2)
	for i, m := range models {
		if states[i], err = m.NewState(1); err != nil {
			b.Fatal(err)
		}
	}
	ids := make([]int32, 1024)
	for i := range ids {
		ids[i] = int32(i * 31 % 50280)
	}
	var step, fwd [2][]float64
	var rpc []float64 // a bare gRPC round trip (Describe)
	for b.Loop() {
		for round := range rounds {
			start := time.Now()
			for range steps {
				err := p.call(b.Context(), "describe", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
					_, err := c.Describe(ctx, &pb.DescribeRequest{}, o...)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			rpc = append(rpc, float64(time.Since(start).Microseconds())/float64(steps))
			for k := range 2 {
				i := (k + round) % 2 // alternate which goes first
				start := time.Now()
				for range steps {
					if _, err := models[i].Step(b.Context(), states[i], ids[:1]); err != nil {
						b.Fatal(err)
					}
				}
				step[i] = append(step[i], float64(time.Since(start).Microseconds())/float64(steps))
				start = time.Now()
				if _, err := models[i].Forward(b.Context(), [][]int32{ids}, api.Form{}); err != nil {
					b.Fatal(err)
				}
				fwd[i] = append(fwd[i], float64(time.Since(start).Microseconds())/1000)
			}
		}
	}
	diff := func(x [2][]float64) []float64 {
		d := make([]float64, len(x[0]))
		for i := range d {
			d[i] = x[1][i] - x[0][i]
		}
		return d
	}
	b.ReportMetric(median(rpc), "grpc-roundtrip-us")
	b.ReportMetric(median(step[0]), "step-inprocess-us")
	b.ReportMetric(median(step[1]), "step-plugin-us")
	b.ReportMetric(median(diff(step)), "step-added-us")
	b.ReportMetric(median(fwd[0]), "fwd1024-inprocess-ms")
	b.ReportMetric(median(fwd[1]), "fwd1024-plugin-ms")
	b.ReportMetric(median(diff(fwd)), "fwd1024-added-ms")
	rel := diff(fwd)
	for i := range rel {
		rel[i] = 100 * rel[i] / fwd[0][i]
	}
	b.ReportMetric(median(rel), "fwd1024-added-%")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkStateSnapshot times saving a state and loading it into
// another (api.StateSaver), in process and through densessm-backend-cpu,
// for mamba-130m's state (24 layers, 2.9 MB per sequence) at batch 1 and
// 16: what a snapshot costs a plugin's model over an in-process one.
func BenchmarkStateSnapshot(b *testing.B) {
	p := openPlugin(b, "densessm-backend-cpu", testOptions(b))
	cfgJSON, err := os.ReadFile("../../bench/configs/mamba-130m.json")
	if err != nil {
		b.Fatal(err)
	}
	arch, err := api.LookupArchitecture("mamba")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := arch.ParseConfig(cfgJSON)
	if err != nil {
		b.Fatal(err)
	}
	o := api.BuildOptions{BackendOptions: api.BackendOptions{Threads: 2}, Seed: 1, Zeros: true}
	local, err := arch.New(b.Context(), cfg, o)
	if err != nil {
		b.Fatal(err)
	}
	o.Backend = "cpu-plugin"
	remote, err := p.Architecture("mamba").New(b.Context(), cfg, o)
	if err != nil {
		b.Fatal(err)
	}
	defer remote.Close()
	for _, batch := range []int{1, 16} {
		for _, m := range []api.Model{local, remote} {
			where := "inprocess"
			if m == remote {
				where = "plugin"
			}
			b.Run(fmt.Sprintf("%s/batch%d", where, batch), func(b *testing.B) {
				sv := m.(api.StateSaver)
				s, err := m.NewState(batch)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				into, err := m.NewState(batch)
				if err != nil {
					b.Fatal(err)
				}
				defer into.Close()
				var size int64
				for b.Loop() {
					snap, err := sv.SaveState(b.Context(), s)
					if err != nil {
						b.Fatal(err)
					}
					if err := sv.LoadState(b.Context(), into, snap); err != nil {
						b.Fatal(err)
					}
					size = snap.Bytes()
				}
				b.SetBytes(size)
			})
		}
	}
}
