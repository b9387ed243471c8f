#!/usr/bin/env python3
"""Write the safetensors fixtures that checkpoint/ tests read.

Outputs (relative to the repository root):
  checkpoint/testdata/mixed.safetensors   F32, F16, BF16, scalar F32 and I64
                                          tensors with metadata {"format": "pt"}
  checkpoint/testdata/mixed.json          the expected names, dtypes, shapes
                                          and values of mixed.safetensors
  checkpoint/testdata/sharded/            a two-shard checkpoint with its
                                          model.safetensors.index.json and
                                          expected.json

The files are written by the reference `safetensors` package (its Rust
serializer), so the Go reader is checked against the format as the Python
world writes it. BF16 has no numpy dtype: its raw bits are computed here
(round to nearest even from float32) and handed to the serializer as BF16.
Every expected value is exactly representable in its dtype and in JSON.

Requirements (tested with safetensors 0.8.0, numpy 2.4.6, Python 3.11; pinned
in scripts/requirements-pyref.txt, which `make pyref` installs). Run from the
repository root:
  make fixtures
or  $PYTHON scripts/make_safetensors_fixture.py
"""

import json
import os

import numpy as np
from safetensors import _safetensors_rust as st

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint", "testdata")


def bf16_bits(values):
    """Round float32 values to bfloat16 (nearest even) and return the uint16 bits."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_values(bits):
    """Widen bfloat16 bits to float32 exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


# The serializer's dtype names, by safetensors spelling.
SPEC_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64"}


class Tensor:
    """One tensor: its safetensors dtype, shape, little-endian bytes and exact values."""

    def __init__(self, dtype, shape, array, values):
        self.dtype = dtype
        self.shape = list(shape)
        self.array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<")))
        self.values = [v.item() if hasattr(v, "item") else v for v in values]

    def spec(self):
        # The serializer reads the memory at data_ptr; self.array stays alive
        # for as long as this object does.
        return st.TensorSpec(dtype=SPEC_DTYPE[self.dtype], shape=self.shape,
                             data_ptr=self.array.ctypes.data, data_len=self.array.nbytes)


def f32(shape, values):
    arr = np.asarray(values, dtype=np.float32).reshape(shape)
    return Tensor("F32", shape, arr, [float(v) for v in arr.reshape(-1)])


def f16(shape, values):
    arr = np.asarray(values, dtype=np.float16).reshape(shape)
    return Tensor("F16", shape, arr, [float(v) for v in arr.reshape(-1)])


def bf16(shape, values):
    bits = bf16_bits(values).reshape(shape)
    return Tensor("BF16", shape, bits, [float(v) for v in bf16_values(bits).reshape(-1)])


def i64(shape, values):
    arr = np.asarray(values, dtype=np.int64).reshape(shape)
    return Tensor("I64", shape, arr, [int(v) for v in arr.reshape(-1)])


def save(path, tensors, metadata):
    st.serialize_file({name: t.spec() for name, t in tensors.items()}, path, metadata=metadata)


def expected(tensors, metadata):
    return {
        "metadata": metadata,
        "tensors": [
            {"name": name, "dtype": t.dtype, "shape": t.shape, "values": t.values}
            for name, t in sorted(tensors.items())
        ],
    }


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    os.makedirs(os.path.join(ROOT, "sharded"), exist_ok=True)

    mixed = {
        "a.f32": f32([3, 5], [(i - 7) / 8 + i * 0.1 for i in range(15)]),
        "b.f16": f16([4], [65504.0, 2.0 ** -24, -1.5, 0.1]),
        "c.bf16": bf16([2, 3, 2], [1.0, -2.5, 3.140625, 1e-3, 65536.0, -0.0,
                                   0.1, 7.0, -1e20, 1e-30, 0.5, 123.456]),
        "d.scalar": f32([], [3.25]),
        "e.i64": i64([2], [-3, 1 << 40]),
    }
    meta = {"format": "pt"}
    save(os.path.join(ROOT, "mixed.safetensors"), mixed, meta)
    write_json(os.path.join(ROOT, "mixed.json"), expected(mixed, meta))

    shards = {
        "model-00001-of-00002.safetensors": {
            "embed.weight": f32([2, 3], [0.5 * i - 1 for i in range(6)]),
            "layers.0.norm.weight": bf16([3], [1.0, 0.75, -0.25]),
        },
        "model-00002-of-00002.safetensors": {
            "layers.1.norm.weight": f16([3], [2.0, -0.125, 1024.0]),
            "lm_head.weight": f32([3, 2], [0.25 * i for i in range(6)]),
        },
    }
    weight_map, total, every = {}, 0, {}
    for shard, tensors in shards.items():
        save(os.path.join(ROOT, "sharded", shard), tensors, meta)
        for name, t in tensors.items():
            weight_map[name] = shard
            total += t.array.nbytes
            every[name] = t
    write_json(os.path.join(ROOT, "sharded", "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})
    write_json(os.path.join(ROOT, "sharded", "expected.json"), expected(every, meta))


if __name__ == "__main__":
    main()
