// Package pybind is the Go side of the Python package densessm: the small
// surface that gopy (github.com/go-python/gopy) binds into the extension
// module densessm._gobind. The pure-Python layer in pybind/densessm wraps
// it in the shape Python users expect; nothing here is meant to be called
// from Go.
//
// The surface is shaped for gopy: functions and methods on a few handle
// types (Model, State, Tokenizer, PrefixCache, Job) taking strings, numbers,
// booleans and handles (nil: the handle 0), with an error as the last result (gopy raises it as RuntimeError; the
// Python layer turns that into densessm.Error). gopy releases the GIL for
// every call.
//
// Bulk data never crosses as gopy slices (one cgo call per element) but
// through the Arrow C Data Interface: the Python side allocates the
// ArrowArray and ArrowSchema structs (ctypes) and passes their
// addresses as integers; Go imports token ids from them and exports logits
// and ids into them. Exported buffers are allocated with C malloc (arrow-go's
// mallocator), never on the Go heap, so NumPy can hold them after the call:
// they are freed when the last Python reference goes (the Arrow release
// callback).
//
// Long work (logits, generation, training, evaluation) runs on a goroutine
// as a Job, which the Python layer polls in short waits: the main thread
// returns to the interpreter often enough for Ctrl-C to raise
// KeyboardInterrupt, which cancels the job's context.
package pybind
