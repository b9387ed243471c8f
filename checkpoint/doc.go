// Package checkpoint reads and writes model weights in the safetensors format,
// single-file or sharded, and reads Hugging Face config.json files.
//
// # The safetensors format
//
// A safetensors file is
//
//	8 bytes   N, the header length, unsigned little-endian
//	N bytes   the header: a UTF-8 JSON object, padded with spaces
//	the rest  the data section: every tensor's little-endian bytes, row-major
//
// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3],
// "data_offsets": [begin, end]}, offsets being relative to the data section,
// and may hold a "__metadata__" object of string values. A sharded checkpoint
// is several such files plus a model.safetensors.index.json whose
// "weight_map" names the shard of each tensor.
//
// # Checks
//
// Open treats files as untrusted and validates everything before allocating
// anything sized by their content: N fits in the file and is at most 100 MB;
// the header is valid UTF-8 JSON, one object, with no duplicate names (also
// inside "__metadata__" and inside an entry); every entry has a known dtype,
// a shape of non-negative integers whose element count and byte size do not
// overflow, and two data offsets with begin <= end that lie in the data
// section and span exactly the shape's byte size; and, as the format's
// specification requires, the tensors sorted by offset tile the data section
// with no overlap, no hole and nothing left over. A sharded index must map
// every tensor to a shard in the index's own directory that holds it, and
// every shard tensor must be listed. Every error names the file and, where
// there is one, the tensor, and wraps api.ErrCorrupt (api.ErrUnsupported for
// an unknown dtype, api.ErrNotFound for a missing file or tensor).
//
// # Memory
//
// Files are memory-mapped read-only (with a plain read where mapping is not
// available) and tensors are read lazily: Raw returns the stored bytes
// without copying, Float32s widens one tensor, and LoadInto uploads straight
// into a model's parameters. A file truncated by another process while
// mapped would fault on access; Float32s and LoadInto turn that fault into an
// error instead of a crash.
//
// Write produces files the reference implementation reads: tensors in name
// order, the header padded to a multiple of 8 bytes, written to a temporary
// file, fsync'd and renamed over the target.
package checkpoint
