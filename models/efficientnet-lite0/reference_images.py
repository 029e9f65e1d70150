"""Records reference features of a few embedded test images (Twemoji PNGs, as the
`blindsight-testdata` crate ships them) computed independently of the Rust client: PIL
decodes the PNG and composites its alpha on white, resizes to 224 x 224 (bilinear),
scales each value to (x - 127) / 128, and onnxruntime runs efficientnet-lite0-features.onnx.
The embed crate's test compares its own whole path (decode, resize, tract) against these.

Output: little-endian float32, one 1280-vector per image, in the order given.
Usage: python reference_images.py OUT.bin IMAGE.png...   (needs numpy, pillow, onnxruntime)
"""
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def planes(path):
    rgba = Image.open(path).convert('RGBA')
    white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert('RGB')
    small = rgb.resize((224, 224), Image.BILINEAR)
    x = (np.asarray(small, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)[None]


def main():
    here = __file__.rsplit('/', 1)[0] if '/' in __file__ else '.'
    s = ort.InferenceSession(f'{here}/efficientnet-lite0-features.onnx')
    out = [s.run(['features'], {'image': planes(p)})[0][0] for p in sys.argv[2:]]
    np.concatenate(out).astype('<f4').tofile(sys.argv[1])


if __name__ == '__main__':
    main()
