package tokens

import (
	"errors"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

func TestBatchAndStep(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	tok, flat, err := Batch(b, [][]int32{{1, 2, 3}, {4, 5, 6}}, 7)
	if err != nil || !tok.Shape().Equal(api.Shape{2, 3}) || len(flat) != 6 || flat[5] != 6 {
		t.Fatalf("Batch: %v %v %v", tok, flat, err)
	}
	for name, tc := range map[string]struct {
		ids  [][]int32
		want error
	}{
		"empty":    {nil, api.ErrShape},
		"ragged":   {[][]int32{{1, 2}, {3}}, api.ErrShape},
		"negative": {[][]int32{{-1}}, api.ErrOutOfRange},
		"too big":  {[][]int32{{7}}, api.ErrOutOfRange},
	} {
		if _, _, err := Batch(b, tc.ids, 7); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := Targets(b, api.Batch{Targets: [][]int32{{1, 2, 3}}}, api.Shape{2, 3}); !errors.Is(err, api.ErrShape) {
		t.Errorf("missing target row: %v", err)
	}
	s := NewStep(b, 2)
	if err := s.Upload(b, []int32{3, 6}, 7); err != nil {
		t.Fatal(err)
	}
	if got := s.IDs.(*cpu.Tensor).HostInt32s(); got[0] != 3 || got[1] != 6 {
		t.Errorf("uploaded %v", got)
	}
	if err := s.Upload(b, []int32{3}, 7); !errors.Is(err, api.ErrShape) {
		t.Errorf("short step: %v", err)
	}
	if err := s.Upload(b, []int32{3, 9}, 7); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("out of vocabulary: %v", err)
	}
}
