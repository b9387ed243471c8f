// Package generate decodes text from densessm models: a prefill of the
// prompt, then recurrent Steps, each new token drawn by a Sampler.
//
// Three levels, each built on the one before:
//
//   - Sampler turns one row of logits into a token under Options
//     (repetition penalty, temperature, top-k, top-p, min-p, as Hugging
//     Face transformers' logits processors do), with a seeded generator of
//     its own and no allocation per token.
//   - Generate decodes a batch of prompts of any lengths in lockstep and
//     hands out each token as it is decoded; Tokens is the same for one
//     prompt as a Go iterator.
//   - Stream and Text work on text through a tokenizer: they hand out
//     pieces of text as soon as they are final (no broken UTF-8 character,
//     nothing that may still turn out to be a stop string) and cut the
//     output before the first stop string.
//
// Everything takes a context, checked before every model call, and returns
// errors rather than panicking; option errors wrap api.ErrConfig and name
// the option as the command line spells it.
package generate
