#!/usr/bin/env python3
"""Build the tokenizer parity fixtures in tokenizer/testdata.

Trains small BPE tokenizers with Hugging Face `tokenizers` on a local corpus
(Go source files under `go env GOROOT`/src plus a short multilingual text
written here; nothing is downloaded), in the styles of real models:

  gpt2        byte-level BPE, merges stored as "a b" strings, <mask> added
              token with lstrip (RoBERTa-like)
  gpt2_pairs  the same tokenizer with merges stored as ["a", "b"] pairs
  roberta     byte-level BPE with a prefix space and RobertaProcessing
  neox        NFC, byte level without prefix space, space-run added tokens
  llama       SentencePiece BPE: Prepend/Replace normalizers, byte fallback,
              fuse_unk, <s> template, Replace/ByteFallback/Fuse/Strip decoder
  metaspace   Metaspace pre-tokenizer (prepend_scheme "first") and decoder
  cl100k      Split with the cl100k pattern, ByteLevel without regex,
              ignore_merges, Sequence[ByteLevel, Template] post-processor,
              a single_word added token
  o200k       Split with the o200k pattern (no hand-written scanner: the Go
              side falls back to regexp2), a Replace regex normalizer, and a
              [SEP] added token with single_word and rstrip
  gpt2_padded gpt2 with left truncation to 12 tokens and BatchLongest left
              padding to a multiple of 8 (batch ids recorded too)
  wordbpe     NFKC+Lowercase+Strip, Whitespace+Digits+Punctuation,
              end_of_word_suffix, unk token, BPEDecoder, a normalized added
              token

It also trains a byte-level BPE (vocabulary 600, min_frequency 2, two
special tokens) on a small corpus saved as train_corpus.json, and saves
HF's result as train_expected.json: the Go trainer must learn the same
vocabulary and merges from the same texts.

Component variants (a fixture with some components replaced, see VARIANTS)
are recorded on a subset of the texts.

For each tokenizer it records, for every text of the evaluation corpus
(CJK, emoji and ZWJ sequences, combining marks, NBSP, U+3000, tab and
newline runs, trailing spaces, digit runs, long words...), HF's ids with and
without special tokens, byte offsets, and decoded text with and without
special tokens.

HF's trainer breaks some ties (limit_alphabet) in hash order, so a rerun may
learn slightly different vocabularies: regenerate all files together.

Requires: tokenizers==0.23.3 (pinned in scripts/requirements-pyref.txt).
Run from the repository root:  make tokenizer-fixtures  (which runs
`make pyref` first), or  $PYTHON scripts/make_tokenizer_fixtures.py
"""

import json
import os
import random
import subprocess
import sys

import tokenizers
from tokenizers import (Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers, AddedToken)

VERSION = "0.23.3"
OUT = os.path.join("tokenizer", "testdata")
VOCAB = 1000
# Characters kept by the non-byte-level trainers: the rarer ones exercise
# byte fallback and the unknown token.
ALPHABET = 160

CL100K = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
O200K = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
         r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
         r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

MULTILINGUAL = """
The quick brown fox jumps over the lazy dog. It's what they'll say, we're told.
Привет, мир! Как дела? Съешь же ещё этих мягких французских булок.
Γειά σου Κόσμε. Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.
こんにちは世界。日本語のテキストも少し入れておきます。東京は大きい都市です。
你好，世界！中文文本用于训练分词器。我们在北京学习编程。
안녕하세요 세계. 한국어 문장도 조금 넣습니다.
مرحبا بالعالم. هذه جملة عربية قصيرة.
नमस्ते दुनिया। यह एक छोटा हिंदी वाक्य है।
Emoji: 😀 😃 👍 🎉 🚀 ❤️ 👨‍👩‍👧 🇫🇷 1️⃣
Café naïve résumé coöperate façade jalapeño Zürich Ångström.
""" * 20


def go_corpus(limit=1_500_000):
    root = subprocess.run(["go", "env", "GOROOT"], capture_output=True,
                          text=True, check=True).stdout.strip()
    texts, total = [], 0
    for pkg in ["strings", "unicode/utf8", "fmt", "bufio", "bytes", "sort",
                "text/template", "encoding/json", "net/url", "html"]:
        d = os.path.join(root, "src", pkg)
        for name in sorted(os.listdir(d)):
            if not name.endswith(".go"):
                continue
            with open(os.path.join(d, name), encoding="utf-8") as f:
                t = f.read()
            texts.append(t)
            total += len(t)
            if total >= limit:
                return texts
    return texts


def training_texts():
    lines = []
    for t in go_corpus():
        lines.extend(t.splitlines(keepends=True))
    lines.extend(MULTILINGUAL.splitlines(keepends=True))
    return lines


EVAL = [
    "",
    " ",
    "Hello world",
    " Hello world",
    "Hello world   ",
    "It's, I'm, they'll, we've, she'd, you're. IT'S I'LL",
    "func main() {\n\tfmt.Println(\"hello, 世界\")\n}\n",
    "\t\tindented with tabs\n\n\n\nand newline runs\r\n\r\nend",
    "trailing spaces   \nnext line  \t \n",
    "digits 1234567890 3.14159 2024-01-01 ١٢٣ ²³",
    "pneumonoultramicroscopicsilicovolcanoconiosis Donaudampfschifffahrtsgesellschaftskapitän",
    "你好，世界！今天天气很好。我们一起去公园散步吧。",
    "こんにちは、世界。カタカナとひらがなと漢字。",
    "안녕하세요, 세계! 반갑습니다.",
    "Emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flag 🇯🇵 keycap 1️⃣ heart ❤️ rare 🦩🪐",
    "Combining: e\u0301 a\u0308 n\u0303 Z\u0327\u030c stacked o\u0302\u0323\u0301",
    "NBSP:\u00a0here\u00a0\u00a0two and ideographic\u3000space\u3000\u3000end",
    "Mixed\u2003em\u2002en\u2009thin\u200bzero\u200dwidth",
    "Arabic مرحبا بالعالم Hebrew שלום עולם Hindi नमस्ते",
    "Привет, мир! ΑΒΓ αβγ Ελληνικά",
    "Symbols: @#$%^&*()_+-=[]{}|;':\",./<>?`~ «quotes» —dash– …",
    "URL https://example.com/path?q=1&r=two#frag and email a.b@c.io",
    "    four leading spaces and\t\ttabs\t",
    "x" * 300,
    "a" + " " * 40 + "b",
    "\n",
    "\n\n\n",
    "   \n   \n",
    "The <|endoftext|> token and <mask> and <s> and </s> inside text.",
    "<|endoftext|>",
    "Hello<|endoftext|>World <mask>masked <mask> end",
    "<s>start with bos",
    "ſ long s 'ſ 'S 'RE 'Ll and Kelvin \u212a",
    "ﬁ ligature ① circled ｆｕｌｌｗｉｄｔｈ Ⅻ",
    "İstanbul ΣΊΣΥΦΟΣ Straße ǅemal",
    "tab\tsep\tvalues\there",
    "Zero width joiner\u200d alone and variation selector\ufe0f",
    "Line1\rLine2\r\rLine3",
    "Rare CJK: 龘 靐 齉 𠀀 𪚥 and math 𝔸𝕓𝒸",
    "mixedCASE camelCaseWords SCREAMING_SNAKE kebab-case-words",
    "123 4567 89012 345678 1,000,000.00",
    "quote's end' 'start 'tis ''double''",
    "    ",
    "\u3000\u3000",
    "\u00a0",
    "end with newline\n",
    "Ünïcödé wörds with àccents everywhere",
    "print(f\"{x!r:>10}\") # comment with ✓ and ✗",
    "a [SEP] b a[SEP]b x [SEP]   y [SEP]",
    "World Worldwide World. HelloWorld World",
    "I love New York and NEW  YORK and new york!",
    "zero\u200bwidth\ufeffspace",
    "  <mask>  <mask><mask> x<mask>y",
    "Mixed 😀 emoji<|endoftext|>\n\n<|endoftext|>  tail",
    "1 12 123 1234 12345 123456 1234567",
    "\t \t \n \n\t\n  \r\n \r\n\r\n",
]


# Random mixes of the pieces above, to catch what hand-written texts miss.
POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000",
    "\u2003", "\u200b\u200d\ufe0f", "你好世界中文字龘", "こんにちはカタカナ", "안녕하세요", "Привет",
    "αβγΣ", "مرحبا", "नमस्ते", "😀👍🏽👨\u200d👩\u200d👧🇯🇵1️⃣❤️", "\u0301\u0308\u0327\u030c\u0323",
    "éñüİſKß", "'s'S're'RE've'll'd'm't", "①²³١٢٣Ⅻﬁｆｕ", "<|endoftext|>", "<mask>", "<s>", "[SEP]",
    "World", "New York",
]


def random_texts(n, seed=1):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        out.append("".join(rng.choice(rng.choice(POOLS)) if rng.random() < 0.7 else rng.choice(POOLS)
                           for _ in range(k)))
    return out


EVAL += random_texts(24)


def bpe_trainer(**kw):
    return trainers.BpeTrainer(vocab_size=kw.pop("vocab_size", VOCAB), min_frequency=2,
                               show_progress=False, **kw)


def train(tok, trainer):
    tok.train_from_iterator(training_texts(), trainer=trainer)
    return tok


def make_gpt2():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    train(tok, bpe_trainer(special_tokens=["<|endoftext|>"],
                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, single_word=False,
                               normalized=False, special=True)])
    return tok


def make_roberta():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    train(tok, bpe_trainer(special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0),
                                                      trim_offsets=True, add_prefix_space=True)
    return tok


def make_neox():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    train(tok, bpe_trainer(special_tokens=["<|endoftext|>", "<|padding|>"],
                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_tokens([AddedToken(" " * n, normalized=True, special=False) for n in range(24, 1, -1)])
    tok.add_tokens([AddedToken("\t\t", normalized=True, special=False)])
    return tok


def make_llama():
    # Trained with a Metaspace pre-tokenizer; saved, as Llama 2's file is,
    # with the space handling in the normalizer and no pre-tokenizer.
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    train(tok, bpe_trainer(vocab_size=VOCAB - 259, special_tokens=["<unk>", "<s>", "</s>"],
                           limit_alphabet=ALPHABET))
    data = json.loads(tok.to_str())
    trained = data["model"]["vocab"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = 3 + b
    for t, _ in sorted(trained.items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    data["model"]["vocab"] = vocab
    data["added_tokens"] = [
        {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    data["pre_tokenizer"] = None
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    data["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    return Tokenizer.from_str(json.dumps(data))


def make_metaspace():
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    train(tok, bpe_trainer(special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=ALPHABET))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return tok


def make_cl100k():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CL100K), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    train(tok, bpe_trainer(special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_tokens([AddedToken("World", single_word=True, normalized=False, special=False)])
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      special_tokens=[("<|begin_of_text|>", 0)])])
    return tok


def make_o200k():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.normalizer = normalizers.Replace(Regex("\u200b|\ufeff"), "")
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    train(tok, bpe_trainer(special_tokens=["<|endoftext|>"],
                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_tokens([AddedToken("[SEP]", single_word=True, lstrip=False, rstrip=True,
                               normalized=False, special=True)])
    return tok


def make_wordbpe():
    tok = Tokenizer(models.BPE(unk_token="[UNK]", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                           normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation()])
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    train(tok, bpe_trainer(special_tokens=["[UNK]", "[PAD]"], end_of_word_suffix="</w>",
                           limit_alphabet=ALPHABET))
    tok.add_tokens([AddedToken("New York", normalized=True, special=False)])
    return tok


# Component variants: a base fixture with some components replaced, recorded
# on VARIANT_TEXTS. They cover what the main fixtures do not use.
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
QWEN_RE = CL100K.replace(r"\p{N}{1,3}", r"\p{N}")
VARIANTS = [
    ("nfd_whitespace", "wordbpe", {"normalizer": {"type": "NFD"}, "pre_tokenizer": {"type": "Whitespace"}}),
    ("nfkd_lstrip", "wordbpe", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFKD"}, {"type": "Strip", "strip_left": True, "strip_right": False}]},
        "pre_tokenizer": {"type": "WhitespaceSplit"}}),
    ("replace_regex", "wordbpe", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Lowercase"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}]},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed",
                          "invert": False}}),
    ("merged_previous", "wordbpe", {"pre_tokenizer": {
        "type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False}}),
    ("contiguous_invert", "wordbpe", {"pre_tokenizer": {
        "type": "Split", "pattern": {"Regex": "[aeiou]"}, "behavior": "Contiguous", "invert": True}}),
    ("punct_digits", "wordbpe", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Punctuation", "behavior": "Contiguous"}, {"type": "Digits", "individual_digits": False}]}}),
    ("char_delimiter", "wordbpe", {"pre_tokenizer": {"type": "CharDelimiterSplit", "delimiter": "e"}}),
    ("metaspace_never", "wordbpe", {
        "pre_tokenizer": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "never", "split": False},
        "decoder": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "never", "split": False}}),
    ("template_trunc_pad", "wordbpe", {
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[UNK]", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[PAD]", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"[UNK]": {"id": "[UNK]", "ids": [0], "tokens": ["[UNK]"]},
                                              "[PAD]": {"id": "[PAD]", "ids": [1], "tokens": ["[PAD]"]}}},
        "truncation": {"direction": "Right", "max_length": 9, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 12}, "direction": "Right", "pad_to_multiple_of": None,
                    "pad_id": 1, "pad_type_id": 0, "pad_token": "[PAD]"}}),
    ("bytelevel_prefix_noregex", "gpt2", {
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": False},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                           "use_regex": True}}),
    ("nfkc_lower_mergednext", "gpt2", {
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": GPT2_RE}, "behavior": "MergedWithNext", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}}),
    ("qwen_digits", "gpt2", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}}),
]
VARIANT_TEXTS = [t for t in EVAL if 0 < len(t) < 120][:24]


def to_pair_merges(data):
    m = data["model"]["merges"]
    data["model"]["merges"] = [x.split(" ") if isinstance(x, str) else x for x in m]


def to_string_merges(data):
    m = data["model"]["merges"]
    assert all(" " not in a and " " not in b for a, b in m)
    data["model"]["merges"] = [a + " " + b for a, b in m]


def byte_offsets(text, offsets):
    out = []
    for s, e in offsets:
        out.append([len(text[:s].encode("utf-8")), len(text[:e].encode("utf-8"))])
    return out


def write_trainer_fixture():
    lines = training_texts()
    corpus, size = [], 0
    for i in range(0, len(lines), 97):  # a spread-out sample of ~40 KB
        corpus.append(lines[i])
        size += len(lines[i].encode("utf-8"))
        if size > 40_000:
            break
    corpus += EVAL
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    with open(os.path.join(OUT, "train_corpus.json"), "w", encoding="utf-8") as f:
        json.dump(corpus, f, ensure_ascii=False)
    with open(os.path.join(OUT, "train_expected.json"), "w", encoding="utf-8") as f:
        f.write(tok.to_str())


def main():
    if tokenizers.__version__ != VERSION:
        sys.exit("need tokenizers==%s, have %s" % (VERSION, tokenizers.__version__))
    os.makedirs(OUT, exist_ok=True)
    write_trainer_fixture()
    built = {
        "gpt2": make_gpt2(), "roberta": make_roberta(), "neox": make_neox(), "llama": make_llama(),
        "metaspace": make_metaspace(), "cl100k": make_cl100k(), "o200k": make_o200k(),
        "wordbpe": make_wordbpe(),
    }
    files = {}
    for name, tok in built.items():
        data = json.loads(tok.to_str())
        if name == "gpt2":
            to_string_merges(data)
            pairs = json.loads(json.dumps(data))
            to_pair_merges(pairs)
            files["gpt2_pairs"] = pairs
            padded = Tokenizer.from_str(json.dumps(pairs))
            padded.enable_truncation(max_length=12, direction="left")
            padded.enable_padding(pad_id=0, pad_token="<|endoftext|>", pad_to_multiple_of=8,
                                  direction="left")
            files["gpt2_padded"] = json.loads(padded.to_str())
        else:
            to_pair_merges(data)
        files[name] = data
    cases, batches = {}, {}
    for name, data in sorted(files.items()):
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        path = os.path.join(OUT, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        tok = Tokenizer.from_file(path)  # what the Go side will read
        rows = []
        for t in EVAL:
            enc = tok.encode(t)
            plain = tok.encode(t, add_special_tokens=False)
            rows.append({
                "text": t,
                "ids": enc.ids,
                "ids_plain": plain.ids,
                # gpt2's variants tokenize like gpt2: their offsets would
                # only repeat gpt2's.
                "offsets": None if name.startswith("gpt2_") else byte_offsets(t, plain.offsets),
                "decoded": tok.decode(enc.ids),
                "decoded_special": tok.decode(enc.ids, skip_special_tokens=False),
            })
        cases[name] = rows
        if name == "gpt2_padded":
            batches[name] = [e.ids for e in tok.encode_batch(EVAL)]
    variants = []
    for name, base, override in VARIANTS:
        data = dict(files[base], **override)
        tok = Tokenizer.from_str(json.dumps(data))
        rows = []
        for t in VARIANT_TEXTS:
            enc = tok.encode(t)
            plain = tok.encode(t, add_special_tokens=False)
            rows.append({"text": t, "ids": enc.ids, "ids_plain": plain.ids,
                         "offsets": byte_offsets(t, plain.offsets),
                         "decoded": tok.decode(enc.ids),
                         "decoded_special": tok.decode(enc.ids, skip_special_tokens=False)})
        variants.append({"name": name, "base": base, "override": override, "cases": rows})
    with open(os.path.join(OUT, "parity.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizers_version": VERSION, "cases": cases, "batches": batches,
                   "variants": variants}, f, ensure_ascii=False, separators=(",", ":"))


if __name__ == "__main__":
    main()
