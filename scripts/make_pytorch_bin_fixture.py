#!/usr/bin/env python3
"""Write the PyTorch pytorch_model.bin fixtures that checkpoint/ tests read.

Outputs (relative to the repository root), all under checkpoint/testdata/pytorch/:
  model.bin       torch.save of an OrderedDict state_dict (with the _metadata
                  attribute a module's state_dict carries, which pickles as a
                  BUILD) holding F32, F16, BF16, F64 (as an nn.Parameter), I32,
                  I64, I8, U8 and BOOL tensors, a scalar, an empty tensor, and
                  views that share one storage: the whole base, a contiguous
                  slice at a storage offset, a strided slice at an offset, a
                  transpose and a stride-0 expand
  model.json      the expected name, dtype, shape and row-major values of every
                  tensor of model.bin (the checkpoint/ expectation format)
  proto4.bin      the same state_dict saved with pickle_protocol=4 (FRAME,
                  SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL opcodes); model.json
                  describes it too
  evil.bin        a zip laid out like torch.save's whose data.pkl, written
                  opcode by opcode here and never unpickled, calls
                  os.system("echo pwned") through GLOBAL + REDUCE
  legacy.bin      torch.save(..., _use_new_zipfile_serialization=False): the
                  pre-1.6 non-zip format, which the reader refuses
  sharded/        pytorch_model-0000{1,2}-of-00002.bin and the
                  pytorch_model.bin.index.json that maps each tensor to its
                  shard, plus expected.json
  mamba/          a tiny transformers MambaForCausalLM (tied embeddings) as
                  config.json + pytorch_model.bin (torch.save of its
                  state_dict, so lm_head.weight shares the embedding's
                  storage), and expected.safetensors: the same state_dict
                  without lm_head.weight, written by the safetensors package,
                  as an independent reference for `densessm convert`

Every value is exactly representable in its dtype and in JSON, so the Go
tests compare bit for bit. torch.save writes a random serialization id, so
the .bin files differ between runs while their tensors do not.

Requirements (tested with torch 2.15.0, transformers 5.24.0, safetensors
0.8.0, Python 3.11; the CPU-only torch wheel is enough), as pinned in
scripts/requirements-pyref.txt. Run from the repository root:
  make fixtures
(which runs `make pyref` first, then this script and
make_safetensors_fixture.py with ~/.cache/densessm/pyref/bin/python), or
  $PYTHON scripts/make_pytorch_bin_fixture.py
"""

import collections
import json
import os
import shutil
import struct
import zipfile

import torch
from safetensors.torch import save_file
from transformers import MambaConfig, MambaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint", "testdata", "pytorch")

# safetensors spelling of each torch dtype used here.
DTYPE_NAME = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int32: "I32", torch.int64: "I64", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def expectation(state_dict):
    """The expectation JSON of a state_dict: tensors sorted by name, values row-major."""
    tensors = []
    for name in sorted(state_dict):
        t = state_dict[name].detach()
        values = t.to(torch.float64).reshape(-1).tolist() if t.dtype != torch.bool else [float(v) for v in t.reshape(-1).tolist()]
        tensors.append({"name": name, "dtype": DTYPE_NAME[t.dtype], "shape": list(t.shape), "values": values})
    return {"metadata": {}, "tensors": tensors}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def mixed_state_dict():
    """The tensors of model.bin; the views share their base's storage."""
    sd = collections.OrderedDict()
    sd["a.f32"] = torch.arange(15, dtype=torch.float32).reshape(3, 5) / 4 - 1
    sd["b.f16"] = torch.tensor([0.5, -2.0, 65504.0, 6.103515625e-05], dtype=torch.float16)
    sd["c.bf16"] = (torch.arange(12, dtype=torch.float32).reshape(2, 3, 2) * 1.5 - 7).to(torch.bfloat16)
    sd["d.scalar"] = torch.tensor(3.25)
    sd["e.i64"] = torch.tensor([-(2 ** 40), 7, 123456789], dtype=torch.int64)
    sd["f.f64"] = torch.nn.Parameter(torch.tensor([[0.125, -1e-3], [1e10, 2.0]], dtype=torch.float64))
    sd["g.i32"] = torch.tensor([-5, 0, 2 ** 30], dtype=torch.int32)
    sd["h.i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    sd["i.u8"] = torch.tensor([0, 200, 255, 7], dtype=torch.uint8)
    sd["j.bool"] = torch.tensor([True, False, True])
    sd["k.empty"] = torch.zeros(0, 3)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5
    sd["v.base"] = base
    sd["v.rows"] = base[2:]                     # contiguous, storage offset 12
    sd["v.window"] = base[1:3, 2:5]             # strided, storage offset 8
    sd["v.transposed"] = base.t()               # strides (1, 6)
    sd["v.expanded"] = base[0, :4].unsqueeze(0).expand(3, 4)  # stride 0
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd


def check_views(sd):
    """Make sure the views really are what the Go tests rely on."""
    assert sd["v.rows"].is_contiguous() and sd["v.rows"].storage_offset() == 12
    assert not sd["v.window"].is_contiguous() and sd["v.window"].storage_offset() == 8
    assert not sd["v.transposed"].is_contiguous() and sd["v.transposed"].stride() == (1, 6)
    assert sd["v.expanded"].stride() == (0, 1)
    ptr = sd["v.base"].untyped_storage().data_ptr()
    for k in ("v.rows", "v.window", "v.transposed", "v.expanded"):
        assert sd[k].untyped_storage().data_ptr() == ptr, k


def evil_pickle():
    """Opcodes of os.system("echo pwned"), protocol 2, written by hand."""
    cmd = b"echo pwned"
    return (b"\x80\x02"                               # PROTO 2
            + b"cos\nsystem\n"                        # GLOBAL os.system
            + b"q\x00"                                # BINPUT 0
            + b"X" + struct.pack("<I", len(cmd)) + cmd  # BINUNICODE
            + b"q\x01"                                # BINPUT 1
            + b"\x85"                                 # TUPLE1
            + b"q\x02"                                # BINPUT 2
            + b"R"                                    # REDUCE
            + b"q\x03"                                # BINPUT 3
            + b".")                                   # STOP


def write_evil(path):
    """A zip with torch.save's record names around the evil pickle."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", evil_pickle())
        z.writestr("evil/byteorder", "little")
        z.writestr("evil/version", "3\n")


def write_sharded(d):
    os.makedirs(d)
    shards = {
        "pytorch_model-00001-of-00002.bin": collections.OrderedDict(
            [("layer.0.weight", torch.arange(6, dtype=torch.float32).reshape(2, 3) - 2.5),
             ("layer.0.bias", torch.tensor([1.0, -1.0], dtype=torch.float16))]),
        "pytorch_model-00002-of-00002.bin": collections.OrderedDict(
            [("layer.1.weight", (torch.arange(4, dtype=torch.float32).reshape(2, 2) * 0.75).t())]),
    }
    weight_map, total, merged = {}, 0, {}
    for fname, sd in shards.items():
        torch.save(sd, os.path.join(d, fname))
        for k, v in sd.items():
            weight_map[k] = fname
            total += v.numel() * v.element_size()
            merged[k] = v
    write_json(os.path.join(d, "pytorch_model.bin.index.json"),
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    write_json(os.path.join(d, "expected.json"), expectation(merged))


def write_mamba(d):
    torch.manual_seed(5)
    cfg = MambaConfig(vocab_size=48, hidden_size=16, num_hidden_layers=2, state_size=4, conv_kernel=3,
                      expand=2, time_step_rank=2, use_bias=False, use_conv_bias=True, tie_word_embeddings=True)
    model = MambaForCausalLM(cfg).to(torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape) * 0.25)
    assert model.lm_head.weight is model.backbone.embeddings.weight
    model.save_pretrained(d, safe_serialization=True)
    os.remove(os.path.join(d, "model.safetensors"))
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    sd = model.state_dict()
    assert "lm_head.weight" in sd
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    ref = {k: v.contiguous() for k, v in sd.items() if k != "lm_head.weight"}
    save_file(ref, os.path.join(d, "expected.safetensors"), metadata={"format": "pt"})


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    sd = mixed_state_dict()
    check_views(sd)
    torch.save(sd, os.path.join(ROOT, "model.bin"))
    write_json(os.path.join(ROOT, "model.json"), expectation(sd))
    torch.save(sd, os.path.join(ROOT, "proto4.bin"), pickle_protocol=4)
    write_evil(os.path.join(ROOT, "evil.bin"))
    torch.save({"w": torch.ones(2)}, os.path.join(ROOT, "legacy.bin"), _use_new_zipfile_serialization=False)
    write_sharded(os.path.join(ROOT, "sharded"))
    write_mamba(os.path.join(ROOT, "mamba"))
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
            print(os.path.relpath(os.path.join(dirpath, f), ROOT), os.path.getsize(os.path.join(dirpath, f)))


if __name__ == "__main__":
    main()
