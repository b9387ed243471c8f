package cuda

import (
	"github.com/densessm/densessm/api"
)

// maxConstBytes bounds the constants constF32 keeps on the device.
const maxConstBytes = 1 << 20

// constF32 returns a device tensor holding vals and a function to call
// when the caller is done with it. These are the small constant arrays a
// kernel takes by pointer (rotary's theta, retention's decays): the same
// values come back every layer and every token, and uploading them each
// time would make every call allocate and wait for a host-to-device copy,
// which a decode step cannot afford. So each distinct list is uploaded
// once and kept until Close (release does nothing then); past
// maxConstBytes of them, a list is uploaded for the call and release
// frees it.
func (b *Backend) constF32(vals []float32) (t *Tensor, release func()) {
	raw := f32Bytes(vals)
	key := string(raw)
	b.constMu.Lock()
	defer b.constMu.Unlock()
	if t, ok := b.consts[key]; ok {
		return t, func() {}
	}
	t = b.Alloc(api.F32, len(vals)).(*Tensor)
	b.Upload(t, raw)
	if b.constBytes+int64(len(raw)) > maxConstBytes {
		return t, func() { b.Free(t) }
	}
	if b.consts == nil {
		b.consts = map[string]*Tensor{}
	}
	b.consts[key] = t
	b.constBytes += int64(len(raw))
	return t, func() {}
}

// freeConsts frees the constants constF32 keeps.
func (b *Backend) freeConsts() {
	b.constMu.Lock()
	defer b.constMu.Unlock()
	for _, t := range b.consts {
		b.Free(t)
	}
	b.consts, b.constBytes = nil, 0
}
