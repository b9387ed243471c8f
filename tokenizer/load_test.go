package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// miniJSON is a small valid byte-level tokenizer; %s placeholders are
// replaced by the tests.
const miniJSON = `{
  "version": "1.0",
  "added_tokens": [{"id": 5, "content": "<eos>", "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true}],
  "normalizer": NORMALIZER,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "post_processor": null,
  "decoder": {"type": "ByteLevel"},
  "model": MODEL
}`

const miniModel = `{"type": "BPE", "dropout": null, "unk_token": null, "fuse_unk": false,
  "byte_fallback": false, "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4},
  "merges": MERGES}`

// mini builds a tokenizer.json from miniJSON.
func mini(normalizer, model, merges string) string {
	s := strings.Replace(miniJSON, "NORMALIZER", normalizer, 1)
	s = strings.Replace(s, "MODEL", model, 1)
	return strings.Replace(s, "MERGES", merges, 1)
}

// TestLoadMergesForms checks that both merges forms load to the same
// model, and that an empty merges list gives one token per character.
func TestLoadMergesForms(t *testing.T) {
	for _, merges := range []string{`["a b", "Ġ ab"]`, `[["a", "b"], ["Ġ", "ab"]]`, `["#version: 0.2", "a b", "Ġ ab"]`} {
		tok, err := FromJSON([]byte(mini("null", miniModel, merges)))
		if err != nil {
			t.Fatalf("%s: %v", merges, err)
		}
		ids, err := tok.Encode("ab ab<eos>")
		if err != nil || len(ids) != 3 || ids[0] != 2 || ids[1] != 4 || ids[2] != 5 {
			t.Errorf("%s: ids %v, %v; want [2 4 5]", merges, ids, err)
		}
	}
	tok, err := FromJSON([]byte(mini("null", miniModel, `[]`)))
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := tok.Encode("ab"); len(ids) != 2 {
		t.Errorf("without merges: %v", ids)
	}
}

// TestLoadErrors checks that malformed files give ErrCorrupt and
// unsupported ones ErrUnsupported.
func TestLoadErrors(t *testing.T) {
	corrupt := []struct{ name, json string }{
		{"not json", `{"model": `},
		{"no model", `{"added_tokens": []}`},
		{"model not object", mini("null", `[1, 2]`, "")},
		{"no merges", mini("null", strings.Replace(miniModel, `"merges": MERGES`, `"x": 1`, 1), "")},
		{"no vocab", mini("null", `{"type": "BPE", "merges": []}`, "")},
		{"vocab not map", mini("null", `{"type": "BPE", "vocab": [1], "merges": []}`, "")},
		{"negative id", mini("null", `{"type": "BPE", "vocab": {"a": -1}, "merges": []}`, "")},
		{"merge with three parts", mini("null", miniModel, `["a b c"]`)},
		{"merge with one part", mini("null", miniModel, `["ab"]`)},
		{"merge pair of three", mini("null", miniModel, `[["a", "b", "c"]]`)},
		{"merge of unknown token", mini("null", miniModel, `["a z"]`)},
		{"merge result unknown", mini("null", miniModel, `["b a"]`)},
		{"merge not string", mini("null", miniModel, `[7]`)},
		{"dropout out of range", mini("null", strings.Replace(miniModel, `"dropout": null`, `"dropout": 2`, 1), `[]`)},
		{"normalizer without type", mini(`{"prepend": "x"}`, miniModel, `[]`)},
		{"prepend without string", mini(`{"type": "Prepend"}`, miniModel, `[]`)},
		{"bad behavior", strings.Replace(mini("null", miniModel, `[]`), `{"type": "ByteLevel", "add_prefix_space"`,
			`{"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways"}, "x": {"add_prefix_space"`, 1)},
		{"pattern with both", mini(`{"type": "Replace", "pattern": {"String": "a", "Regex": "b"}, "content": ""}`, miniModel, `[]`)},
		{"nested too deep", mini(strings.Repeat(`{"type": "Sequence", "normalizers": [`, 40)+`{"type": "NFC"}`+strings.Repeat(`]}`, 40), miniModel, `[]`)},
		{"added token without id", strings.Replace(mini("null", miniModel, `[]`), `"id": 5,`, ``, 1)},
		{"added token huge id", strings.Replace(mini("null", miniModel, `[]`), `"id": 5,`, `"id": 99999999999,`, 1)},
		{"bool as string", strings.Replace(mini("null", miniModel, `[]`), `"add_prefix_space": false`, `"add_prefix_space": "no"`, 1)},
		{"metaspace replacement of two chars", strings.Replace(mini("null", miniModel, `[]`), `"decoder": {"type": "ByteLevel"}`,
			`"decoder": {"type": "Metaspace", "replacement": "ab"}`, 1)},
		{"roberta without sep", strings.Replace(mini("null", miniModel, `[]`), `"post_processor": null`,
			`"post_processor": {"type": "RobertaProcessing", "cls": ["<s>", 0]}`, 1)},
		{"truncation direction", strings.Replace(mini("null", miniModel, `[]`), `"version": "1.0",`,
			`"version": "1.0", "truncation": {"max_length": 5, "direction": "Up"},`, 1)},
		{"padding strategy", strings.Replace(mini("null", miniModel, `[]`), `"version": "1.0",`,
			`"version": "1.0", "padding": {"strategy": {"Fixed": -3}, "pad_id": 0},`, 1)},
		{"template with undefined token", strings.Replace(mini("null", miniModel, `[]`), `"post_processor": null`,
			`"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>", "type_id": 0}}], "special_tokens": {}}`, 1)},
	}
	for _, tc := range corrupt {
		if _, err := FromJSON([]byte(tc.json)); !errors.Is(err, api.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", tc.name, err)
		}
	}
	unsupported := []struct{ name, json string }{
		{"wordpiece", mini("null", `{"type": "WordPiece", "vocab": {"a": 0}}`, "")},
		{"unigram", mini("null", `{"type": "Unigram", "vocab": [["a", 0.0]]}`, "")},
		{"wordlevel", mini("null", `{"type": "WordLevel", "vocab": {"a": 0}}`, "")},
		{"dropout", mini("null", strings.Replace(miniModel, `"dropout": null`, `"dropout": 0.1`, 1), `[]`)},
		{"normalizer", mini(`{"type": "BertNormalizer"}`, miniModel, `[]`)},
		{"precompiled in sequence", mini(`{"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Precompiled"}]}`, miniModel, `[]`)},
		{"regex", mini(`{"type": "Replace", "pattern": {"Regex": "(?<=a"}, "content": ""}`, miniModel, `[]`)},
		{"decoder", strings.Replace(mini("null", miniModel, `[]`), `"decoder": {"type": "ByteLevel"}`, `"decoder": {"type": "WordPiece"}`, 1)},
		{"post-processor", strings.Replace(mini("null", miniModel, `[]`), `"post_processor": null`, `"post_processor": {"type": "ChatTemplate"}`, 1)},
		{"pre-tokenizer", strings.Replace(mini("null", miniModel, `[]`), `"type": "ByteLevel", "add_prefix_space"`, `"type": "BertPreTokenizer", "add_prefix_space"`, 1)},
	}
	for _, tc := range unsupported {
		if _, err := FromJSON([]byte(tc.json)); !errors.Is(err, api.ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", tc.name, err)
		}
	}
}

// TestLoadFile checks Load's errors for missing files and that it names
// the file.
func TestLoadFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) || !errors.Is(err, api.ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(path, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Errorf("bad file: %v", err)
	}
}

// TestLoadLimits checks that Load refuses files over the size cap without
// reading them, devices that never end, and directories.
func TestLoadLimits(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: %v", err)
	}
	// A sparse file just over the cap: refused from its size.
	big := filepath.Join(dir, "big.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxFileSize + 1); err != nil {
		f.Close()
		t.Skip("no sparse files:", err)
	}
	f.Close()
	_, err = Load(big)
	if !errors.Is(err, api.ErrOutOfRange) || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "256 MiB") {
		t.Errorf("file over the cap: %v", err)
	}
	// A file at the cap is read (and is not JSON).
	defer func(old int64) { maxFileSize = old }(maxFileSize)
	maxFileSize = 1 << 10
	if err := os.WriteFile(big, make([]byte, maxFileSize), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("file at the cap: %v", err)
	}
	// /dev/zero never ends: it is cut at the cap.
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	if _, err := Load("/dev/zero"); !errors.Is(err, api.ErrOutOfRange) || !strings.Contains(err.Error(), "/dev/zero") {
		t.Errorf("/dev/zero: %v", err)
	}
}
