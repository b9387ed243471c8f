package distributed

import (
	"hash/fnv"
	"math"

	"github.com/densessm/densessm/api"
)

// WeightsHash returns a hash of m's parameters (names and float32 bits):
// what Agree compares to check that the replicas of a data-parallel run
// start, and stay, equal.
func WeightsHash(m api.Trainable) uint64 {
	h := fnv.New64a()
	var b [4]byte
	for _, p := range m.Parameters() {
		h.Write([]byte(p.Name))
		for _, v := range api.ViewFloat32s(p.Value).V {
			u := math.Float32bits(v)
			b[0], b[1], b[2], b[3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
			h.Write(b[:])
		}
	}
	return h.Sum64()
}
