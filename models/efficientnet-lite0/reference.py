"""Records the reference features the embed crate's tests compare tract against:
onnxruntime's output of efficientnet-lite0-features.onnx for deterministic synthetic
inputs (value k of the flattened 1×3×224×224 input: ((k·m) mod 1024)/512 − 1 for the
multipliers below), little-endian float32, one 1280-vector after the other.

Usage: python reference.py OUT.bin   (needs numpy and onnxruntime)
"""
import sys

import numpy as np
import onnxruntime as ort

MULTIPLIERS = [2654435761, 40503]


def synthetic(m):
    k = np.arange(3 * 224 * 224, dtype=np.int64)
    return (((k * m) % 1024).astype(np.float32) / 512.0 - 1.0).reshape(1, 3, 224, 224)


def main():
    here = __file__.rsplit('/', 1)[0] if '/' in __file__ else '.'
    s = ort.InferenceSession(f'{here}/efficientnet-lite0-features.onnx')
    out = [s.run(['features'], {'image': synthetic(m)})[0][0] for m in MULTIPLIERS]
    np.concatenate(out).astype('<f4').tofile(sys.argv[1])


if __name__ == '__main__':
    main()
