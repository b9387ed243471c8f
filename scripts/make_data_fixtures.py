#!/usr/bin/env python3
"""Build the corpus fixtures of the data package in data/testdata.

Writes, with the real Python tools (nothing is downloaded):

  parquet/train.parquet   datasets.Dataset.to_parquet, a "text" string column
                          (with a null and an empty string) and an "id"
                          column, in row groups of 4 rows
  hf_disk/                datasets.Dataset.save_to_disk: the Arrow IPC
                          stream data-00000-of-00001.arrow (a "text"
                          large_string column with a null), state.json and
                          dataset_info.json
  ipc_file.arrow          pyarrow.ipc.new_file (the IPC file format, "ARROW1"
                          magic), three record batches: "id" int64, "text"
                          string, "body" large_string
  docs.jsonl              JSON lines with a "content" field (no "text"):
                          unicode, escapes, a null, a blank line
  folder/                 .txt, .md and .go files in nested folders, a binary
                          file, a Latin-1 file and a hidden file

and expected.json: one case per way of opening them (the specs, the field,
the extensions), with the files the Go reader must resolve and the documents
it must yield, in order. Null and empty texts are not documents. The
documents of the Parquet and Arrow fixtures are read back with datasets and
pyarrow, so the expected lists are what those tools see in the files.

Requires: datasets==5.2.0, pyarrow==26.0.1 (pinned in
scripts/requirements-pyref.txt). Run from the repository root:
make data-fixtures  (which runs `make pyref` first), or
$PYTHON scripts/make_data_fixtures.py
"""

import json
import os
import shutil

import datasets
import pyarrow as pa
import pyarrow.ipc as ipc

DATASETS_VERSION = "5.2.0"
PYARROW_VERSION = "26.0.1"
OUT = os.path.join("data", "testdata")

PARQUET_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Второй документ: привет, мир!",
    None,
    "日本語のテキスト。東京は大きい都市です。",
    "",
    "Emoji 😀 👍 🎉 and a ZWJ family 👨‍👩‍👧.",
    "line one\nline two\n\ttabbed line\n",
    "Café naïve résumé façade Zürich Ångström.",
    "مرحبا بالعالم",
    "last parquet row",
]

DISK_TEXTS = [
    "save_to_disk row zero",
    None,
    "Γειά σου Κόσμε.",
    "a longer row that spans\nseveral lines\nof text\n",
    "你好，世界！",
    "trailing spaces   ",
]

IPC_BATCHES = [
    [(1, "first batch, first row", "body one"),
     (2, None, "body two"),
     (3, "first batch, third row", None)],
    [(4, "second batch 🚀", "body four")],
    [(5, "third batch\r\nwith CRLF", "body five"),
     (6, "", "body six"),
     (7, "नमस्ते दुनिया", "body seven")],
]

JSONL_LINES = [
    '{"title": "one", "content": "plain ascii document"}',
    '{"content": "escapes: \\n newline, \\t tab, \\"quote\\", \\u00e9, \\ud83d\\ude00", "title": "two"}',
    '{"title": "three", "content": null}',
    '{"title": "four", "content": "raw unicode: ünïcödé 中文 😀"}',
    '{"title": "five", "content": ""}',
    '   {"title": "six", "content": "leading spaces on the line", "extra": [1, 2, {"x": "y"}]}   ',
    '',
    '{"title": "seven", "content": "after a blank line"}',
]

FOLDER_FILES = {
    "a.txt": "alpha text file\n",
    "b.md": "# Beta\n\nA markdown file with ünïcödé.\n",
    "sub/c.txt": "gamma, in a sub folder\n",
    "sub/deeper/d.go": "package d\n\n// D is a Go file.\nconst D = 1\n",
    "sub/deeper/e.txt": "epsilon, two folders down\n",
    "z_empty.txt": "",
}
FOLDER_BINARY = {
    "image.bin": bytes([0x89, 0x50, 0x4E, 0x47, 0x00, 0x00, 0x01, 0xFF]),
    "latin1.txt": "caf\xe9 in Latin-1\n".encode("latin-1"),
    ".hidden.txt": b"a hidden file\n",
}


def present(texts):
    return [t for t in texts if t]


def write_parquet():
    ds = datasets.Dataset.from_dict(
        {"id": list(range(len(PARQUET_TEXTS))), "text": PARQUET_TEXTS},
        features=datasets.Features({"id": datasets.Value("int64"),
                                    "text": datasets.Value("string")}))
    os.makedirs(os.path.join(OUT, "parquet"))
    path = os.path.join(OUT, "parquet", "train.parquet")
    ds.to_parquet(path, batch_size=4)
    back = datasets.Dataset.from_parquet(path)["text"]
    assert list(back) == PARQUET_TEXTS, back
    import pyarrow.parquet as pq
    assert pq.ParquetFile(path).num_row_groups == 3
    return present(back)


def write_disk():
    ds = datasets.Dataset.from_dict(
        {"text": DISK_TEXTS, "label": list(range(len(DISK_TEXTS)))},
        features=datasets.Features({"text": datasets.Value("large_string"),
                                    "label": datasets.Value("int32")}))
    path = os.path.join(OUT, "hf_disk")
    ds.save_to_disk(path)
    arrow = os.path.join(path, "data-00000-of-00001.arrow")
    with open(arrow, "rb") as f:
        assert f.read(6) != b"ARROW1", "save_to_disk wrote the file format"
    back = datasets.load_from_disk(path)
    assert back.features["text"] == datasets.Value("large_string")
    assert list(back["text"]) == DISK_TEXTS
    return present(back["text"])


def write_ipc_file():
    schema = pa.schema([("id", pa.int64()), ("text", pa.string()),
                        ("body", pa.large_string())])
    path = os.path.join(OUT, "ipc_file.arrow")
    with pa.OSFile(path, "wb") as sink:
        with ipc.new_file(sink, schema) as w:
            for rows in IPC_BATCHES:
                cols = list(zip(*rows))
                w.write_batch(pa.record_batch(
                    [pa.array(c, type=schema.field(i).type) for i, c in enumerate(cols)],
                    schema=schema))
    with open(path, "rb") as f:
        assert f.read(6) == b"ARROW1"
    table = ipc.open_file(path).read_all()
    assert ipc.open_file(path).num_record_batches == len(IPC_BATCHES)
    return present(table.column("text").to_pylist()), present(table.column("body").to_pylist())


def write_jsonl():
    path = os.path.join(OUT, "docs.jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(JSONL_LINES) + "\n")
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                v = json.loads(line)["content"]
                if v:
                    docs.append(v)
    return docs


def write_folder():
    root = os.path.join(OUT, "folder")
    for name, text in FOLDER_FILES.items():
        p = os.path.join(root, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    for name, data in FOLDER_BINARY.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)


def folder_case(name, specs, exts, files):
    rel = [os.path.join("folder", f) for f in files]
    return {"name": name, "specs": specs, "field": "", "exts": exts, "files": rel,
            "documents": present(FOLDER_FILES[f] for f in files)}


def main():
    assert datasets.__version__ == DATASETS_VERSION, datasets.__version__
    assert pa.__version__ == PYARROW_VERSION, pa.__version__
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    parquet_docs = write_parquet()
    disk_docs = write_disk()
    ipc_text, ipc_body = write_ipc_file()
    jsonl_docs = write_jsonl()
    write_folder()

    text_files = ["a.txt", "b.md", "sub/c.txt", "sub/deeper/d.go", "sub/deeper/e.txt", "z_empty.txt"]
    cases = [
        {"name": "parquet", "specs": ["parquet/train.parquet"], "field": "", "exts": [],
         "files": ["parquet/train.parquet"], "documents": parquet_docs},
        {"name": "save_to_disk file", "specs": ["hf_disk/data-00000-of-00001.arrow"], "field": "",
         "exts": [], "files": ["hf_disk/data-00000-of-00001.arrow"], "documents": disk_docs},
        {"name": "save_to_disk folder", "specs": ["hf_disk"], "field": "", "exts": [],
         "files": ["hf_disk/data-00000-of-00001.arrow"], "documents": disk_docs},
        {"name": "ipc file", "specs": ["ipc_file.arrow"], "field": "text", "exts": [],
         "files": ["ipc_file.arrow"], "documents": ipc_text},
        {"name": "ipc file large_string", "specs": ["ipc_file.arrow"], "field": "body", "exts": [],
         "files": ["ipc_file.arrow"], "documents": ipc_body},
        {"name": "jsonl", "specs": ["docs.jsonl"], "field": "content", "exts": [],
         "files": ["docs.jsonl"], "documents": jsonl_docs},
        folder_case("folder", ["folder"], [], text_files),
        folder_case("folder exts", ["folder"], [".txt"],
                    ["a.txt", "sub/c.txt", "sub/deeper/e.txt", "z_empty.txt"]),
        # Globs, like folder walks, leave out hidden names and files that
        # are not UTF-8 text (latin1.txt).
        folder_case("glob", ["folder/*.txt"], [], ["a.txt", "z_empty.txt"]),
        folder_case("glob class", ["folder/sub/deeper/[d-e].?*"], [],
                    ["sub/deeper/d.go", "sub/deeper/e.txt"]),
        folder_case("globstar", ["folder/**/*.txt"], [],
                    ["a.txt", "sub/c.txt", "sub/deeper/e.txt", "z_empty.txt"]),
        folder_case("globstar middle", ["folder/sub/**/d.go"], [], ["sub/deeper/d.go"]),
        {"name": "mixed", "specs": ["docs.jsonl", "folder/sub/c.txt", "docs.jsonl"],
         "field": "content", "exts": [], "files": ["docs.jsonl", "folder/sub/c.txt"],
         "documents": jsonl_docs + [FOLDER_FILES["sub/c.txt"]]},
    ]
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"datasets": DATASETS_VERSION, "pyarrow": PYARROW_VERSION, "cases": cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
