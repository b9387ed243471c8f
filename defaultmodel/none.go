//go:build nodefaultmodel

package defaultmodel

// A build without the default model: every function returns errMissing.
var configJSON, weights, tokenizerJSON []byte
