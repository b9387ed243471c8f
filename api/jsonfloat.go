package api

import (
	"math"
	"strconv"
	"strings"
)

// ConfigFloat is a float64 config field that marshals the way Python's json
// module writes floats: always with a decimal point or an exponent (1.0, not
// 1). transformers checks the types of config fields and refuses an int
// where it expects a float.
type ConfigFloat float64

// MarshalJSON writes the shortest decimal that reads back as f, with ".0"
// added to whole numbers. NaN and infinities are not JSON and give an error.
func (f ConfigFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, &unsupportedFloat{v}
	}
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return []byte(s), nil
}

type unsupportedFloat struct{ v float64 }

func (e *unsupportedFloat) Error() string {
	return "config float " + strconv.FormatFloat(e.v, 'g', -1, 64) + " is not representable in JSON"
}
