"""The plain onnxruntime script a user writes to run an ONNX network on one image: the ``onnx640`` scenario's peer.

``python -m benchmarks.plain_onnx IMAGE MODEL.onnx HxW``: import onnxruntime, NumPy and Pillow, load the model,
decode the image to RGB, resize it (bilinear) to HxW, float32 in [0, 1] as ``(1, 3, H, W)``, run it once and
print the first output's shape. What ``featcli run IMAGE --model MODEL.onnx --size HxW`` does, without the
layer table.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    image, model, size = argv
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    h, w = (int(v) for v in size.split("x"))
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    with Image.open(image) as im:
        a = np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    x = np.ascontiguousarray(a.transpose(2, 0, 1)[None])
    out = sess.run(None, {sess.get_inputs()[0].name: x})
    print(list(out[0].shape))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
