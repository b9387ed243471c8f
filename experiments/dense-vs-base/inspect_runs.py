"""Figures the doc derives from the experiment's run directories (Python 3
standard library only), so that each has its command:

  python3 experiments/dense-vs-base/inspect_runs.py gates RUN/model.safetensors...
      the RMS of the dense links' gate weights (k_select/v_select fc1 and
      fc2 in DenseRetNet, dense_gate fc1 and fc2 in DenseMamba), layers 1
      and up (layer 0 has no links); they start at N(0, 0.02)
  python3 experiments/dense-vs-base/inspect_runs.py clipping ROWDIR...
      the share of training steps whose gradient norm was above 1 (the
      clipping threshold) over every seed of a row, and the largest norm
"""
import array
import glob
import json
import math
import struct
import sys


def gates(paths):
    for path in paths:
        with open(path, 'rb') as f:
            n = struct.unpack('<Q', f.read(8))[0]
            header = json.loads(f.read(n))
            rms = []
            for name, t in sorted(header.items()):
                if ('select.fc' in name or 'dense_gate.fc' in name) and '.layers.0.' not in name:
                    lo, hi = t['data_offsets']
                    f.seek(8 + n + lo)
                    a = array.array('f')
                    a.frombytes(f.read(hi - lo))
                    rms.append(math.sqrt(sum(x * x for x in a) / len(a)))
        if rms:
            print(f'{path}: gate weight RMS {min(rms):.3f} to {max(rms):.3f} over {len(rms)} tensors')
        else:
            print(f'{path}: no gate weights')


def clipping(rows):
    for row in rows:
        norms = [r['grad_norm'] for p in sorted(glob.glob(row + '/seed*/metrics.jsonl'))
                 for r in map(json.loads, open(p)) if 'grad_norm' in r]
        if not norms:
            print(f'{row}: no metrics')
            continue
        share = sum(g > 1 for g in norms) / len(norms)
        print(f'{row}: {100 * share:.0f}% of {len(norms)} steps clipped, largest gradient norm {max(norms):.0f}')


if __name__ == '__main__':
    if len(sys.argv) < 3 or sys.argv[1] not in ('gates', 'clipping'):
        sys.exit(__doc__)
    {'gates': gates, 'clipping': clipping}[sys.argv[1]](sys.argv[2:])
