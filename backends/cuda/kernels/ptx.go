package kernels

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"strings"
)

// The prebuilt PTX: every source compiled ahead of time by NVRTC for
// PrebuiltTarget and committed under ptx/, for a machine with a driver but
// no NVRTC (the driver's JIT compiles PTX for any device of that
// capability or newer). Each file's first line records the hash of the
// source and headers it was built from (SourceHash); a stale file is never
// used, and TestPrebuiltPTX fails until `make cuda-ptx` rebuilds it.

//go:embed ptx/*.ptx
var ptxFS embed.FS

// PrebuiltTarget is the target of the prebuilt PTX: compute_80 runs on
// Ampere (A100) and every later architecture through the driver's JIT.
var PrebuiltTarget = Target{Arch: 80}

// PrebuiltISA is the newest PTX ISA version the prebuilt PTX may declare
// (`.version`): a driver's JIT refuses PTX newer than its CUDA version, and
// 8.4 is CUDA 12.4's (drivers R550 and newer). make cuda-ptx builds it with
// NVRTC 12.4 for that reason.
const PrebuiltISA = "8.4"

// ptxStamp starts the first line of a prebuilt PTX file; the source's
// name and SourceHash follow. PTX takes // comments.
const ptxStamp = "// densessm prebuilt PTX of "

// SourceHash is the SHA-256 of a source and every header, independent of
// the NVRTC version: what a prebuilt PTX file must have been built from.
func SourceHash(src Source) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00", src.Name, len(src.Code), src.Code)
	for _, hd := range Headers() {
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00", hd.Name, len(hd.Source), hd.Source)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// PrebuiltPath is the path of src's prebuilt PTX inside the repository
// (next to this file).
func PrebuiltPath(src Source) string {
	return "ptx/" + strings.TrimSuffix(src.Name, ".cu") + ".ptx"
}

// StampPTX returns ptx with the first line that marks it as built from
// src.
func StampPTX(src Source, ptx []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s%s sha256 %s\n", ptxStamp, src.Name, SourceHash(src))
	b.Write(bytes.TrimRight(ptx, "\x00"))
	return b.Bytes()
}

// Prebuilt returns the prebuilt PTX of src for PrebuiltTarget, or an error
// when there is none or it was built from another version of the source
// or headers.
func Prebuilt(src Source) ([]byte, error) {
	b, err := ptxFS.ReadFile(PrebuiltPath(src))
	if err != nil {
		return nil, fmt.Errorf("no prebuilt PTX of %s (make cuda-ptx builds it)", src.Name)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if want := fmt.Sprintf("%s%s sha256 %s", ptxStamp, src.Name, SourceHash(src)); string(line) != want {
		return nil, fmt.Errorf("the prebuilt PTX of %s was built from another version of it (make cuda-ptx rebuilds it)", src.Name)
	}
	return b, nil
}
