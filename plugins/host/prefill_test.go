package host

import (
	"context"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestPrefillLastThroughPlugin checks PrefillLast through the plugin: the
// last position's logits, [B,V], and the state as far on. When the plugin
// answers PrefillRequest.last they are the bits of the same model's
// PrefillLast in process; when the host has to keep the last rows itself
// (a plugin built before it), the bits of the last rows of Prefill's.
func TestPrefillLastThroughPlugin(t *testing.T) {
	p := openPlugin(t, "densessm-backend-cpu", testOptions(t))
	ctx := t.Context()
	ids := [][]int32{{1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}}
	for _, name := range []string{"mamba", "retnet"} {
		m := pluginModel(t, p, name, tinyConfigs[name], 3)
		V := m.Config().Vocab()
		arch, err := api.LookupArchitecture(name)
		if err != nil {
			t.Fatal(err)
		}
		local, err := arch.New(ctx, m.Config(), api.BuildOptions{Backend: "cpu", BackendOptions: api.BackendOptions{Threads: 2}, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		ls, err := local.NewState(2)
		if err != nil {
			t.Fatal(err)
		}
		inProcess, err := local.(interface {
			PrefillLast(context.Context, api.State, [][]int32, api.Form) (api.Tensor, error)
		}).PrefillLast(ctx, ls, ids, api.Form{})
		if err != nil {
			t.Fatal(err)
		}
		full, err := m.NewState(2)
		if err != nil {
			t.Fatal(err)
		}
		all, err := m.Prefill(ctx, full, ids, api.Form{})
		if err != nil {
			t.Fatal(err)
		}
		rows := api.Float32s(all)
		var want []float32
		for b := range 2 {
			want = append(want, rows[(b*5+4)*V:][:V]...)
		}
		for announced, want := range map[bool][]float32{true: api.Float32s(inProcess), false: want} {
			m.last = announced
			s, err := m.NewState(2)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.PrefillLast(ctx, s, ids, api.Form{})
			if err != nil {
				t.Fatal(err)
			}
			if !got.Shape().Equal(api.Shape{2, V}) || !slices.Equal(api.Float32s(got), want) {
				t.Fatalf("%s, plugin answers last %v: logits %v differ from the last rows of Prefill's", name, announced, got.Shape())
			}
			if s.Len() != 5 {
				t.Fatalf("%s: the state counts %d tokens, want 5", name, s.Len())
			}
		}
	}
}
