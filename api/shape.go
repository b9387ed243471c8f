package api

import (
	"fmt"
	"math"
	"slices"
)

// Shape is the size of each axis of a tensor, outermost first (row-major,
// C order). A scalar has an empty shape.
type Shape []int

// NumElements returns the product of the sizes (1 for a scalar).
func (s Shape) NumElements() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Rank returns the number of axes.
func (s Shape) Rank() int { return len(s) }

// Equal reports whether both shapes have the same sizes.
func (s Shape) Equal(o Shape) bool { return slices.Equal(s, o) }

// Clone returns a copy that does not alias s.
func (s Shape) Clone() Shape { return slices.Clone(s) }

// Dim returns the size of axis i; negative i counts from the end (-1 is the
// last axis).
func (s Shape) Dim(i int) int {
	if i < 0 {
		i += len(s)
	}
	return s[i]
}

// String formats the shape as [2 3 4].
func (s Shape) String() string { return fmt.Sprint([]int(s)) }

// Validate checks that every size is non-negative and that the element count
// does not overflow int. Readers of untrusted files call it before
// allocating.
func (s Shape) Validate() error {
	n := 1
	for _, d := range s {
		if d < 0 {
			return fmt.Errorf("shape %v has a negative size: %w", s, ErrShape)
		}
		if d != 0 && n > math.MaxInt/d {
			return fmt.Errorf("shape %v has too many elements: %w", s, ErrShape)
		}
		n *= d
	}
	return nil
}

// BroadcastShapes returns the NumPy broadcast of a and b: shapes are aligned
// at their last axis, and each pair of sizes must be equal or contain a 1.
func BroadcastShapes(a, b Shape) (Shape, error) {
	n := max(len(a), len(b))
	out := make(Shape, n)
	for i := 1; i <= n; i++ {
		da, db := 1, 1
		if i <= len(a) {
			da = a[len(a)-i]
		}
		if i <= len(b) {
			db = b[len(b)-i]
		}
		switch {
		case da == db || db == 1:
			out[n-i] = da
		case da == 1:
			out[n-i] = db
		default:
			return nil, fmt.Errorf("broadcast %v with %v: %w", a, b, ErrShape)
		}
	}
	return out, nil
}
