// Package tokenizer loads Hugging Face tokenizer.json files for BPE models
// and encodes and decodes text exactly as the Hugging Face tokenizers library
// does: byte-level BPE (GPT-2, GPT-NeoX, cl100k-style Split patterns) and
// SentencePiece-style BPE (Metaspace, byte fallback, BOS templates).
//
// The pipeline is the library's: added tokens are matched first, the
// remaining pieces are normalized, pre-tokenized into words, split by the
// BPE model, and the post-processor adds the template's special tokens.
// Decoding runs the file's decoder chain. Offsets are byte offsets into the
// original text.
//
// EncodeReader encodes a text read from an io.Reader and hands out the ids
// in runs. For most byte-level tokenizers (Streams reports which) it reads
// the text a chunk at a time and cuts it only where the ids provably stay
// those of the whole text, so that its memory does not grow with the
// input; for the others it reads the whole input first.
//
// Trainer learns a byte-level BPE tokenizer with the algorithm of Hugging
// Face's BpeTrainer and writes its tokenizer.json; training can be
// cancelled through a context and reports its progress.
//
// The reference is Hugging Face tokenizers 0.23.3: testdata holds
// tokenizers and encodings it produced (scripts/make_tokenizer_fixtures.py)
// and the tests require identical ids, offsets and decoded text.
//
// Model types other than BPE (WordPiece, Unigram, WordLevel) and components
// the package does not implement are rejected at load time with an error
// wrapping api.ErrUnsupported; malformed files give errors wrapping
// api.ErrCorrupt.
package tokenizer
