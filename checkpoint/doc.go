// Package checkpoint reads and writes model weights in the safetensors format,
// single-file or sharded, reads PyTorch pytorch_model.bin files without
// running any of their code, and reads Hugging Face config.json files.
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
// every shard tensor must be listed; the index file, like config.json, is
// read through a size cap (64 MiB; 16 MiB for config.json), so that a
// device or a huge file in their place gives an error wrapping
// api.ErrOutOfRange instead of exhausting memory. Every error names the file
// and, where there is one, the tensor, and wraps api.ErrCorrupt
// (api.ErrUnsupported for an unknown dtype, api.ErrNotFound for a missing
// file or tensor).
//
// # PyTorch files
//
// A pytorch_model.bin written by torch.save(model.state_dict()) (PyTorch 1.6
// and later) is a zip archive of uncompressed records: <name>/data.pkl, the
// pickled dict of tensors, and <name>/data/<key>, the raw bytes of each
// storage. Open reads the pickle with a restricted interpreter that accepts
// only the globals that rebuild tensors and ordered dicts
// (collections.OrderedDict, torch._utils._rebuild_tensor_v2, _rebuild_tensor
// and _rebuild_parameter, and the torch.*Storage types of supported dtypes)
// and refuses any other one (os.system, builtins.eval, ...) with an error
// naming it that wraps api.ErrUnsupported; it imports and calls nothing.
// Storage records must be stored uncompressed inside the file and hold
// exactly the elements their pickle claims, and every tensor view (storage
// offset, sizes, strides) must lie inside its storage. Tensors contiguous in
// the file are read in place like safetensors ones; other views (transposes,
// strided slices) are copied into memory once, at Open, bounded in total by
// the file's size. Views may share a storage (tied weights). The legacy
// non-zip format (a raw pickle of torch's magic number, then of the
// tensors) and other bare pickles are recognised and refused with an error
// that says what they are (api.ErrUnsupported). Sharded checkpoints use
// pytorch_model.bin.index.json, read like the safetensors index.
//
// # Loading a model
//
// LoadModel builds the model config.json describes and fills it from the
// weights, after checking that they agree: every parameter must have a
// tensor of its shape, and every tensor must be a parameter, a name the
// model declares it skips (IgnoredCheckpointNames; by default torchscale's
// rotary and decay buffers), or a tied copy sharing a parameter's storage.
// A disagreement gives one error line that counts each kind of problem,
// names the first few tensors and says what to check. Values that are NaN
// or infinite are refused too, counted in the bytes uploaded. Half-precision
// weights of float32 parameters travel to the backend as stored and are
// widened there.
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
// file, fsync'd and renamed over the target. Write and SaveModel check their
// context as they go, and a cancelled write leaves the target untouched.
package checkpoint
