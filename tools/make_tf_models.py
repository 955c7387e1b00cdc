"""Build the TensorFlow-converter test models: full-integer int8 ``.tflite`` files.

keras.applications networks (random weights) and hand-made U-Net / FPN detector / DenseNet-style
nets, converted by ``tf.lite.TFLiteConverter`` to int8 input and output, calibrated on real
photos (scikit-image's sample images). The applications are converted twice: with the Keras
default dynamic batch (``[-1, H, W, 3]``: the converter emits SHAPE / STRIDED_SLICE / PACK
chains around reshapes) and with a static batch of 1.

Each model also gets ``NAME.real.npy``: a real photo quantized to its int8 input, for tests.

    python tools/make_tf_models.py [--out ROOT] [--size small|full]

writes into ``ROOT/<key>/`` where ``key`` hashes this script, the size and the TF version, so a
changed script regenerates and an unchanged one is reused (``manifest.json`` marks a finished
folder; a file lock makes concurrent callers build it once). ROOT defaults to
``$TINYPATCH_TF_MODELS`` or ``.cache/tfmodels`` in the repository. Importing this module needs
neither TensorFlow nor scikit-image: tests read ``model_names`` and ``ensure_models`` from it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
SIZES = ("small", "full")

# name -> (keras.applications builder, its arguments, input H x W, input value range)
_APPS: dict[str, tuple[str, dict[str, Any], tuple[int, int], tuple[float, float]]] = {
    "mobilenet_a025_128": ("MobileNet", dict(alpha=0.25), (128, 128), (-1.0, 1.0)),
    "mobilenetv2_a035_96": ("MobileNetV2", dict(alpha=0.35), (96, 96), (-1.0, 1.0)),
    "mobilenetv3small_96": ("MobileNetV3Small", dict(), (96, 96), (0.0, 255.0)),
    "mobilenetv3large_96": ("MobileNetV3Large", dict(), (96, 96), (0.0, 255.0)),
    "efficientnetb0_96": ("EfficientNetB0", dict(), (96, 96), (0.0, 255.0)),
}
_APPS_FULL: dict[str, tuple[str, dict[str, Any], tuple[int, int], tuple[float, float]]] = {
    "mobilenetv3small_min_128": ("MobileNetV3Small", dict(minimalistic=True), (128, 128), (0.0, 255.0)),
    "mobilenetv3large_min_128": ("MobileNetV3Large", dict(minimalistic=True), (128, 128), (0.0, 255.0)),
}
CUSTOM = ("unet_64", "fpn_detector_96", "densenet_64")  # hand-made nets, also with dynamic and static batch
CLASSES = 100  # random-weight classifiers: the class count only sizes the last layer


def model_names(size: str = "small") -> list[str]:
    """Every model file stem this script writes at ``size`` (no TensorFlow needed)."""
    apps = {**_APPS, **(_APPS_FULL if size == "full" else {})}
    return [f"{n}_{b}" for n in (*apps, *CUSTOM) for b in ("dyn", "b1")]


def cache_key(size: str) -> str:
    """Hash of this script, the size and the TensorFlow version (when installed)."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(size.encode())
    try:
        from importlib.metadata import version
        h.update(version("tensorflow").encode())
    except Exception:  # not installed: the caller fails or skips before generating
        pass
    return h.hexdigest()[:12]


def default_root() -> Path:
    return Path(os.environ.get("TINYPATCH_TF_MODELS") or REPO / ".cache" / "tfmodels")


def ensure_models(root: Path | None = None, size: str = "small", log: Callable[[str], None] = print) -> Path:
    """The folder holding every model of ``size``; generated (once, under a file lock) if missing."""
    root = root or default_root()
    folder = root / cache_key(size)
    if (folder / "manifest.json").exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (folder / "manifest.json").exists():
                if __name__ == "__main__":
                    _generate(folder, size, log)
                else:  # imported (tests): TensorFlow and its worker processes stay out of this process
                    subprocess.run([sys.executable, __file__, "--generate-into", str(folder), "--size", size],
                                   check=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


# --- generation (needs tensorflow and scikit-image) -------------------------------------------

def _photos(h: int, w: int, lo: float, hi: float) -> Any:
    """Real photos cropped and resized to ``h x w``, mirrored too, scaled to [lo, hi] (float32)."""
    import numpy as np
    import skimage.data as data
    from skimage.transform import resize

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
        img = getattr(data, name)()[..., :3].astype(np.float32) / 255.0
        s = min(img.shape[:2])
        for crop in (img[:s, :s], img[-s:, -s:][:, ::-1]):
            out.append(resize(crop, (h, w), anti_aliasing=True).astype(np.float32))
    return np.stack(out) * (hi - lo) + lo


def _app(builder: str, kwargs: dict[str, Any], hw: tuple[int, int], batch: int | None) -> Any:
    import keras

    inp = keras.Input(batch_shape=(batch, *hw, 3))
    fn = getattr(keras.applications, builder)
    extra = {"classifier_activation": None, "classes": CLASSES, "weights": None, "include_top": True}
    return fn(input_tensor=inp, **extra, **kwargs)


def _unet(batch: int | None) -> Any:
    """Two-level U-Net: Conv2DTranspose on one up path, bilinear UpSampling2D on the other."""
    import keras
    from keras import layers as L

    x = inp = keras.Input(batch_shape=(batch, 64, 64, 3))
    c1 = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    c2 = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(c1))
    b = L.Conv2D(32, 3, padding="same", activation="relu")(L.MaxPooling2D()(c2))
    u2 = L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(b)
    d2 = L.Conv2D(16, 3, padding="same", activation="relu")(L.Concatenate()([u2, c2]))
    u1 = L.UpSampling2D(interpolation="bilinear")(d2)
    d1 = L.Conv2D(8, 3, padding="same", activation="relu")(L.Concatenate()([u1, c1]))
    return keras.Model(inp, L.Conv2D(2, 1)(d1), name="unet_64")


def _fpn(batch: int | None) -> Any:
    """Backbone to stride 16, top-down nearest upsampling, a max-pool branch, three heads."""
    import keras
    from keras import layers as L

    def block(x: Any, ch: int, stride: int) -> Any:
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu6")(x)
        return L.Conv2D(ch, 1, activation="relu6")(x)

    inp = keras.Input(batch_shape=(batch, 96, 96, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inp)   # 48
    c3 = block(block(x, 16, 2), 16, 1)                                       # 24
    c4 = block(c3, 32, 2)                                                    # 12
    c5 = block(c4, 48, 2)                                                    # 6
    p5 = L.Conv2D(24, 1)(c5)
    p4 = L.Add()([L.Conv2D(24, 1)(c4), L.UpSampling2D(interpolation="nearest")(p5)])
    p3 = L.Add()([L.Conv2D(24, 1)(c3), L.UpSampling2D(interpolation="nearest")(p4)])
    p6 = L.MaxPooling2D(3, strides=2, padding="same")(p5)                    # 3
    # the max-pool branch joins P5 by Add: joined by Concatenate, P5's two scale constraints make
    # the converter leave P4's top-down Add in float (DEQUANTIZE ... QUANTIZE)
    heads = [L.Conv2D(3 * 6, 3, padding="same", name=f"head{k}")(L.Conv2D(24, 3, padding="same",
                                                                           activation="relu")(p))
             for k, p in ((3, p3), (4, p4), (5, L.Add()([p5, L.UpSampling2D()(p6)])))]
    return keras.Model(inp, heads, name="fpn_detector_96")


def _densenet(batch: int | None) -> Any:
    """Two dense blocks of three layers (1x1 bottleneck, 3x3 conv, concat) and a transition."""
    import keras
    from keras import layers as L

    inp = keras.Input(batch_shape=(batch, 64, 64, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
    for block in range(2):
        for _ in range(3):
            y = L.Conv2D(16, 1, activation="relu")(x)
            x = L.Concatenate()([x, L.Conv2D(8, 3, padding="same", activation="relu")(y)])
        if block == 0:
            x = L.AveragePooling2D(2)(L.Conv2D(24, 1, activation="relu")(x))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10)(x), name="densenet_64")


def _convert(model: Any, photos: Any) -> bytes:
    import numpy as np
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)  # batch as in the model's Input
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([p[None].astype(np.float32)] for p in photos)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def _real_input(tflite: bytes, photo: Any) -> Any:
    """``photo`` quantized with the converted model's input scale and zero point, batch 1."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    d = Interpreter(model_content=tflite).get_input_details()[0]
    scale, zp = d["quantization"]
    return np.clip(np.round(photo / scale) + zp, -128, 127).astype(np.int8)[None]


def _jobs(size: str) -> list[tuple[str, str, Any, tuple[int, int], tuple[float, float], int | None]]:
    """(file stem, builder kind, builder argument, H x W, input range, batch) of every model."""
    apps = {**_APPS, **(_APPS_FULL if size == "full" else {})}
    jobs: list[tuple[str, str, Any, tuple[int, int], tuple[float, float], int | None]] = []
    for name, (builder, kwargs, hw, rng) in apps.items():
        jobs += [(f"{name}_{tag}", "app", (builder, kwargs), hw, rng, batch) for tag, batch in (("dyn", None), ("b1", 1))]
    for name, hw in (("unet_64", (64, 64)), ("fpn_detector_96", (96, 96)), ("densenet_64", (64, 64))):
        jobs += [(f"{name}_{tag}", "net", name, hw, (0.0, 1.0), batch) for tag, batch in (("dyn", None), ("b1", 1))]
    return jobs


def _make(job: tuple[str, str, Any, tuple[int, int], tuple[float, float], int | None], out: Path) -> tuple[str, int, float]:
    """Build, convert and write one model (in a worker process); (stem, bytes, seconds)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    import numpy as np
    import tensorflow as tf

    name, kind, arg, hw, rng, batch = job
    t = time.perf_counter()
    tf.keras.utils.set_random_seed(0)
    nets = {"unet_64": _unet, "fpn_detector_96": _fpn, "densenet_64": _densenet}
    model = _app(*arg, hw, batch) if kind == "app" else nets[arg](batch)
    photos = _photos(*hw, *rng)
    data = _convert(model, photos)
    (out / f"{name}.tflite").write_bytes(data)
    np.save(out / f"{name}.real.npy", _real_input(data, photos[0]))
    return name, len(data), time.perf_counter() - t


def _generate(folder: Path, size: str, log: Callable[[str], None]) -> None:
    """Build every model into ``folder`` with a pool of processes ($TINYPATCH_TF_JOBS, default the CPUs)."""
    import multiprocessing
    import shutil
    from concurrent.futures import ProcessPoolExecutor
    from importlib.metadata import version

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    jobs = _jobs(size)
    workers = int(os.environ.get("TINYPATCH_TF_JOBS") or min(len(jobs), os.cpu_count() or 1))
    times = {}
    start = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for name, nbytes, seconds in pool.map(_make, jobs, [tmp] * len(jobs)):
            times[name] = round(seconds, 1)
            log(f"{name}: {nbytes:,} B in {seconds:.1f} s")
    manifest = {"size": size, "tensorflow": version("tensorflow"), "workers": workers, "models": sorted(times),
                "seconds": times, "total_seconds": round(time.perf_counter() - start, 1)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(folder, ignore_errors=True)  # a stale partial folder from an interrupted run
    tmp.rename(folder)
    log(f"{len(times)} models in {manifest['total_seconds']} s ({workers} processes) -> {folder}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="cache root (default $TINYPATCH_TF_MODELS or .cache/tfmodels)")
    ap.add_argument("--size", choices=SIZES, default=os.environ.get("TINYPATCH_TF_SIZE", "small"))
    ap.add_argument("--generate-into", type=Path, default=None, help=argparse.SUPPRESS)  # ensure_models' lock held
    args = ap.parse_args(argv)
    if args.generate_into:
        _generate(args.generate_into, args.size, print)
    else:
        print(ensure_models(args.out, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
