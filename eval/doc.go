// Package eval scores densessm language models: perplexity over a stream
// of token ids, and multiple-choice tasks scored as lm-evaluation-harness
// 0.4 scores PIQA, HellaSwag and ARC.
//
// Perplexity (NewPerplexity, ScorePerplexity) has two modes. "recurrent"
// carries one api.State across the whole stream, so that every token after
// the first is predicted from its whole history; "parallel" is Hugging
// Face's sliding-window method (https://huggingface.co/docs/transformers/perplexity),
// each window run from an empty state. The log-softmax is taken on the
// host in float64 from the model's float32 logits, and the memory held is
// one window's logits, whatever the length of the stream.
//
// Multiple choice (ReadMCTask, ScoreMC, EncodePair, LogLikelihood) reads a
// JSONL task file and scores each choice by the log-likelihood of its
// tokens after the context's, with lm-evaluation-harness's encoding of the
// pair (the context's trailing white space moves to the continuation) and
// its metrics acc and acc_norm with their standard errors.
package eval
