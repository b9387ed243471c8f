package api

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Sentinel errors. Errors returned by densessm wrap one of these when the
// cause falls into its class, so callers can test with errors.Is.
var (
	// ErrShape: tensor shapes or sizes do not fit together.
	ErrShape = errors.New("shape mismatch")
	// ErrDType: a tensor has an element type the operation does not take.
	ErrDType = errors.New("wrong dtype")
	// ErrUnsupported: a feature, dtype, op or format this build does not handle.
	ErrUnsupported = errors.New("unsupported")
	// ErrNotFound: a named architecture, backend, tensor or file is missing.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: a file or message is malformed (bad header, offsets out of
	// range, truncated data).
	ErrCorrupt = errors.New("corrupt input")
	// ErrConfig: a model configuration is invalid or inconsistent.
	ErrConfig = errors.New("invalid config")
	// ErrOutOfRange: an index (token id, target, offset) is outside its range.
	ErrOutOfRange = errors.New("out of range")
	// ErrOutOfMemory: a backend could not allocate memory.
	ErrOutOfMemory = errors.New("out of memory")
	// ErrNotFinite: a loss, gradient or weight holds a NaN or an infinity.
	ErrNotFinite = errors.New("not finite")
	// ErrInternal: a bug in densessm (a recovered panic); please report it.
	ErrInternal = errors.New("internal error")
)

// PanicError is the error an entry point returns when it recovers a panic
// that was not already an error value. It wraps ErrInternal and keeps the
// stack for bug reports; Error() stays one line.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the goroutine stack at the point of recovery
}

func (e *PanicError) Error() string { return fmt.Sprintf("internal error: %v", e.Value) }

// Unwrap makes errors.Is(err, ErrInternal) true.
func (e *PanicError) Unwrap() error { return ErrInternal }

// Recover turns a panic into an error stored in *errp. Public entry points
// (CLI commands, plugin servers, the Python binding, Model methods) defer it:
//
//	func (m *model) Forward(...) (_ api.Tensor, err error) {
//		defer api.Recover(&err)
//		...
//	}
//
// A panic whose value is an error (kernels panic with errors wrapping
// ErrShape, ErrDType or ErrOutOfMemory) is returned as that error; any other
// value becomes a *PanicError. Recover must be called directly by defer.
func Recover(errp *error) {
	r := recover()
	if r == nil {
		return
	}
	if err, ok := r.(error); ok {
		if _, rt := r.(interface{ RuntimeError() }); !rt {
			*errp = err
			return
		}
	}
	*errp = &PanicError{Value: r, Stack: debug.Stack()}
}

// Panicf panics with an error wrapping sentinel, formatted like fmt.Errorf.
// Kernels and graph code use it for programmer errors; Recover turns it back
// into an ordinary error at the entry point.
func Panicf(sentinel error, format string, args ...any) {
	panic(fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), sentinel))
}
