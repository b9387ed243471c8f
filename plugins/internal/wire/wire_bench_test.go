package wire

import (
	"testing"

	"github.com/densessm/densessm/api"
)

// BenchmarkLogitsRoundTrip encodes and decodes the logits of a 1024-token
// forward over a 50,280-token vocabulary (206 MB), as a Forward reply does.
func BenchmarkLogitsRoundTrip(b *testing.B) {
	h := api.HostTensor{Name: "logits", DType: api.F32, Shape: api.Shape{1, 1024, 50280}, Data: make([]byte, 4*1024*50280)}
	b.SetBytes(int64(len(h.Data)))
	for b.Loop() {
		enc, err := EncodeTensor(h)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeTensor(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode is the encoding alone.
func BenchmarkEncode(b *testing.B) {
	h := api.HostTensor{Name: "logits", DType: api.F32, Shape: api.Shape{1, 1024, 50280}, Data: make([]byte, 4*1024*50280)}
	b.SetBytes(int64(len(h.Data)))
	for b.Loop() {
		if _, err := EncodeTensor(h); err != nil {
			b.Fatal(err)
		}
	}
}
