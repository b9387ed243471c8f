package api

import (
	"errors"
	"reflect"
	"testing"
)

// TestLayoutPieces checks how layouts cut into pieces: full rows without
// starts join, documents and padding are pieces of their own.
func TestLayoutPieces(t *testing.T) {
	l, err := NewLayout([]int{5, 5, 3, 5, 5}, [][]int{nil, nil, {1}, {2, 4}, nil})
	if err != nil {
		t.Fatal(err)
	}
	want := []Piece{
		{Row: 0, Rows: 2, Start: 0, Len: 5},
		{Row: 2, Rows: 1, Start: 0, Len: 1},
		{Row: 2, Rows: 1, Start: 1, Len: 2},
		{Row: 2, Rows: 1, Start: 3, Len: 2, Pad: true},
		{Row: 3, Rows: 1, Start: 0, Len: 2},
		{Row: 3, Rows: 1, Start: 2, Len: 2},
		{Row: 3, Rows: 1, Start: 4, Len: 1},
		{Row: 4, Rows: 1, Start: 0, Len: 5},
	}
	if got := l.Pieces(); !reflect.DeepEqual(got, want) {
		t.Fatalf("pieces\n got %+v\nwant %+v", got, want)
	}
	if l.Plain() {
		t.Fatal("a layout with starts and padding is plain")
	}
	if got := l.Mask()[10:15]; !reflect.DeepEqual(got, []float32{1, 1, 1, 0, 0}) {
		t.Fatalf("mask of the short row %v", got)
	}
	if got := l.Padded([][]int32{{1}, {2}, {3, 4, 5}, {6}, {7}}, -1)[2]; !reflect.DeepEqual(got, []int32{3, 4, 5, -1, -1}) {
		t.Fatalf("padded row %v", got)
	}
	plain, err := LayoutOf([][]int32{{1, 2}, {3, 4}})
	if err != nil || !plain.Plain() || len(plain.Pieces()) != 1 {
		t.Fatalf("equal lengths: %+v, %v", plain, err)
	}
}

// TestLayoutErrors checks that bad lengths and starts are ErrShape.
func TestLayoutErrors(t *testing.T) {
	for name, c := range map[string]struct {
		lens   []int
		starts [][]int
	}{
		"no rows":          {nil, nil},
		"empty row":        {[]int{2, 0}, nil},
		"start at 0":       {[]int{3}, [][]int{{0}}},
		"start at the end": {[]int{3}, [][]int{{3}}},
		"not increasing":   {[]int{5}, [][]int{{3, 2}}},
		"repeated":         {[]int{5}, [][]int{{2, 2}}},
		"rows of starts":   {[]int{5, 5}, [][]int{{2}}},
	} {
		if _, err := NewLayout(c.lens, c.starts); !errors.Is(err, ErrShape) {
			t.Errorf("%s: %v, want ErrShape", name, err)
		}
	}
	if _, err := (Batch{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1}}}).Layout(); !errors.Is(err, ErrShape) {
		t.Errorf("short targets: %v", err)
	}
}

// TestCheckLens checks the domain of a snapshot's per-sequence counts.
func TestCheckLens(t *testing.T) {
	ok := []StateSnapshot{{Batch: 2, Tokens: 5}, {Batch: 2, Tokens: 5, Lens: []int{5, 3}}}
	for _, s := range ok {
		if err := s.CheckLens(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
	bad := []StateSnapshot{{Tokens: -1}, {Batch: 0, Lens: []int{}}, {Batch: 2, Tokens: 5, Lens: []int{5}},
		{Batch: 2, Tokens: 5, Lens: []int{4, 3}}, {Batch: 2, Tokens: 5, Lens: []int{5, -1}}}
	for _, s := range bad {
		if err := s.CheckLens(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%+v: %v, want ErrCorrupt", s, err)
		}
	}
	if tokens, per := CompactLens([]int{4, 4}); tokens != 4 || per != nil {
		t.Errorf("CompactLens of equal counts: %d %v", tokens, per)
	}
	if tokens, per := CompactLens([]int{4, 6}); tokens != 6 || !reflect.DeepEqual(per, []int{4, 6}) {
		t.Errorf("CompactLens of different counts: %d %v", tokens, per)
	}
}
