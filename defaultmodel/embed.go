//go:build !nodefaultmodel

package defaultmodel

import _ "embed"

// The model's files, as `make default-model` writes them into model/.
var (
	//go:embed model/config.json
	configJSON []byte
	//go:embed model/model.safetensors
	weights []byte
	//go:embed model/tokenizer.json
	tokenizerJSON []byte
)
