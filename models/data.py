"""Built-in data: a seeded multi-task image set, generated offline, plus sklearn digits.

``shapes`` (the default) draws every factor independently, so the tasks do not leak
into each other:

    task        kind            what                                   metric
    shape       classification  circle / square / triangle / cross     accuracy
    color       classification  hue of the shape, 6 bins               accuracy
    texture     classification  background pattern, 4 kinds            accuracy
    size        regression      radius of the shape in pixels          mae
    mask        dense           which 2x2 cell belongs to the shape    miou

and a transfer suite that no trained task names, held out of ``devtune train``: tasks a
representation must keep by itself, to be added later by device tuning
(``devtune bench transfer`` judges a bundle on all of them)::

    quadrant    classification  which quadrant holds the shape's center  accuracy
    dots        classification  0-3 small dots (2-pixel specks)          accuracy
    bg_hue      classification  hue of the first background color, 4 bins accuracy
    noise       classification  sensor noise below / above 0.075         accuracy
    brightness  regression      HSV value of the shape's color, 0.45-1   mae
    saturation  regression      HSV saturation of the shape, 0.45-1      mae
    hue_shift   regression      the shape's hue within its color bin     mae
    bg_light    regression      mean HSV value of the background         mae
    period      regression      stripe period of the background, px      mae
    shade       dense           a soft shadow on the background          miou

Every factor is drawn independently of the others, so each held-out label is independent
of every trained one (``tests/models/test_data.py`` checks it), except ``quadrant``, which
is where the shape is and so what ``mask`` already shows. ``period`` is only visible when
the background has stripes (three textures of four). The shadow is drawn from its own
random stream after everything else, so the trained tasks' factors are what they were
before the suite existed.

Noise, low-contrast backgrounds and small shapes keep it from being saturated.
Numpy only: the device half can use it without torch.
"""

from __future__ import annotations

import numpy as np

from models.dataset import IMAGE_SIZE, MASK_SIZE, SPLIT_SIZES, Dataset, TaskInfo
from models.userdata import load_folder
from shared.errors import ConfigError

# Dataset, TaskInfo and SPLIT_SIZES live in models.dataset; they stay importable from here,
# the data module's public surface since before that split.
__all__ = ["SPLIT_SIZES", "Dataset", "TaskInfo", "load_dataset", "make_digits", "make_shapes"]

SHAPES = ["circle", "square", "triangle", "cross"]
COLORS = ["red", "yellow", "green", "cyan", "blue", "magenta"]
TEXTURES = ["plain", "stripes_h", "stripes_v", "checker"]
_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}

SHAPES_TASKS = [
    # Shape is the one task that needs relations between tokens; at weight 1 the easy tasks
    # claim the bottleneck first and shape stays near chance (0.41 vs 0.92 measured).
    TaskInfo("shape", "classification", classes=SHAPES, weight=3.0),
    TaskInfo("color", "classification", classes=COLORS),
    TaskInfo("texture", "classification", classes=TEXTURES),
    TaskInfo("size", "regression", units="px"),
    TaskInfo("mask", "dense", classes=["background", "shape"]),
    # the transfer suite, held out (see the module docstring)
    TaskInfo("quadrant", "classification", classes=["top_left", "top_right", "bottom_left", "bottom_right"]),
    TaskInfo("dots", "classification", classes=["0", "1", "2", "3"]),
    TaskInfo("bg_hue", "classification", classes=["red", "green", "cyan", "blue"]),
    TaskInfo("noise", "classification", classes=["low", "high"]),
    TaskInfo("brightness", "regression", units="value"),
    TaskInfo("saturation", "regression", units="saturation"),
    TaskInfo("hue_shift", "regression", units="bins"),
    TaskInfo("bg_light", "regression", units="value"),
    TaskInfo("period", "regression", units="px"),
    TaskInfo("shade", "dense", classes=["background", "shade"]),
]
SHAPES_HELD_OUT = [t.name for t in SHAPES_TASKS[5:]]
_SHADE_STREAM = 7  # the shadow's own random stream, so adding it left every other factor as it was


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV (h in [0, 1)) -> RGB in [0, 1], shape (..., 3)."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([
        np.stack([v, t, p], -1), np.stack([q, v, p], -1), np.stack([p, v, t], -1),
        np.stack([p, q, v], -1), np.stack([t, p, v], -1), np.stack([v, p, q], -1),
    ])
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def _shape_mask(kind: int, cy: float, cx: float, r: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if kind == 0:  # circle
        return dy * dy + dx * dx <= r * r
    if kind == 1:  # square, same area scale as the circle
        half = r * 0.85
        return (np.abs(dy) <= half) & (np.abs(dx) <= half)
    if kind == 2:  # upward triangle
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    arm = max(r * 0.3, 1.5)  # cross
    return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))


def make_shapes(split: str = "train", count: int | None = None, seed: int = 0) -> Dataset:
    """Generate one split of ``shapes`` deterministically from (seed, split)."""
    if split not in SPLIT_SIZES:
        raise ConfigError(f"unknown split {split!r}; choose one of {sorted(SPLIT_SIZES)}")
    n = SPLIT_SIZES[split] if count is None else count
    rng = np.random.default_rng([seed, _SPLIT_SEEDS[split]])
    size = IMAGE_SIZE
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    shape = rng.integers(0, len(SHAPES), n)
    color = rng.integers(0, len(COLORS), n)
    texture = rng.integers(0, len(TEXTURES), n)
    dots = rng.integers(0, 4, n)
    radius = rng.uniform(9.0, 20.0, n).astype(np.float32)
    cy = rng.uniform(18, size - 18, n)
    cx = rng.uniform(18, size - 18, n)
    hue_shift = rng.uniform(-0.42, 0.42, n)  # within the color's bin, in bins
    hue = (color + hue_shift) / len(COLORS) % 1.0
    saturation, value = rng.uniform(0.45, 1.0, n), rng.uniform(0.45, 1.0, n)
    fg = _hsv_to_rgb(hue, saturation, value)
    bg_hue = rng.uniform(0, 1, (n, 2))
    bg_value = rng.uniform(0.2, 0.8, (n, 2))
    bg = _hsv_to_rgb(bg_hue, rng.uniform(0.0, 0.35, (n, 2)), bg_value)
    period = rng.uniform(5, 11, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    shade_rng = np.random.default_rng([seed, _SPLIT_SEEDS[split], _SHADE_STREAM])
    shade_y, shade_x = shade_rng.uniform(8, size - 8, n), shade_rng.uniform(8, size - 8, n)
    shade_r = shade_rng.uniform(10, 20, n)

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, MASK_SIZE, MASK_SIZE), dtype=np.uint8)
    shades = np.empty((n, MASK_SIZE, MASK_SIZE), dtype=np.uint8)
    noise_level = rng.uniform(0.03, 0.12, n)
    for k in range(n):
        wave_y = np.sin(2 * np.pi * yy / period[k] + phase[k]) > 0
        wave_x = np.sin(2 * np.pi * xx / period[k] + phase[k]) > 0
        pattern = [np.zeros_like(wave_y), wave_y, wave_x, wave_y ^ wave_x][texture[k]]
        canvas = np.where(pattern[..., None], bg[k, 1], bg[k, 0]).astype(np.float32)
        # the shadow darkens the background only (the shape lies on top), with a soft edge
        dist = np.sqrt((yy - shade_y[k]) ** 2 + (xx - shade_x[k]) ** 2) / shade_r[k]
        canvas *= 1.0 - 0.5 * np.clip(3.0 - 3.0 * dist, 0.0, 1.0)[..., None]
        shades[k] = (dist <= 2.0 / 3.0).reshape(MASK_SIZE, 2, MASK_SIZE, 2).mean(axis=(1, 3)) >= 0.5
        inside = _shape_mask(int(shape[k]), cy[k], cx[k], float(radius[k]), yy, xx)
        canvas[inside] = fg[k]
        for _ in range(int(dots[k])):
            dy, dx = rng.uniform(3, size - 3, 2)
            spot = (yy - dy) ** 2 + (xx - dx) ** 2 <= 2.2**2
            canvas[spot] = 1.0 - canvas[spot]
        canvas += rng.normal(0.0, noise_level[k], canvas.shape)
        images[k] = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
        masks[k] = inside.reshape(MASK_SIZE, 2, MASK_SIZE, 2).mean(axis=(1, 3)) >= 0.5

    labels = {
        "shape": shape.astype(np.int64),
        "color": color.astype(np.int64),
        "texture": texture.astype(np.int64),
        "size": radius[:, None],
        "mask": masks.astype(np.int64),
        "quadrant": ((cy >= size / 2) * 2 + (cx >= size / 2)).astype(np.int64),
        "dots": dots.astype(np.int64),
        "bg_hue": (np.floor(bg_hue[:, 0] * 4) % 4).astype(np.int64),
        "noise": (noise_level > 0.075).astype(np.int64),
        "brightness": value.astype(np.float32)[:, None],
        "saturation": saturation.astype(np.float32)[:, None],
        "hue_shift": hue_shift.astype(np.float32)[:, None],
        "bg_light": bg_value.mean(axis=1).astype(np.float32)[:, None],
        "period": period.astype(np.float32)[:, None],
        "shade": shades.astype(np.int64),
    }
    return Dataset("shapes", images, labels, SHAPES_TASKS, held_out=SHAPES_HELD_OUT)


DIGITS_TASKS = [
    TaskInfo("digit", "classification", classes=[str(d) for d in range(10)]),
    TaskInfo("parity", "classification", classes=["even", "odd"]),
    TaskInfo("ink", "regression", units="fraction"),
    TaskInfo("loop", "classification", classes=["no", "yes"]),
]


def make_digits(split: str = "train", count: int | None = None, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 handwritten digits, upscaled to 64x64 RGB, as a real-data option.

    Its tasks are derived from the digit (parity, closed loop) and the ink, so unlike
    ``shapes`` they are not independent; it is here to show the system on real pixels.
    """
    from sklearn.datasets import load_digits  # shipped with scikit-learn, no download

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    cuts = {"train": order[:1300], "val": order[1300:1500], "test": order[1500:]}
    if split not in cuts:
        raise ConfigError(f"unknown split {split!r}; choose one of {sorted(cuts)}")
    idx = cuts[split][:count]
    small = digits.images[idx] / 16.0  # (B, 8, 8) in [0, 1]
    big = np.kron(small, np.ones((8, 8)))  # (B, 64, 64)
    images = np.clip(np.repeat(big[..., None], 3, -1) * 255, 0, 255).astype(np.uint8)
    target = digits.target[idx].astype(np.int64)
    labels = {
        "digit": target,
        "parity": target % 2,
        "ink": small.mean(axis=(1, 2)).astype(np.float32)[:, None],
        "loop": np.isin(target, [0, 4, 6, 8, 9]).astype(np.int64),
    }
    return Dataset("digits", images, labels, DIGITS_TASKS)


def load_dataset(name: str, split: str, count: int | None = None, seed: int = 0) -> Dataset:
    """A built-in data set by name (``shapes``, ``digits``), or a folder in the user-data format."""
    if name == "shapes":
        return make_shapes(split, count, seed)
    if name == "digits":
        return make_digits(split, count, seed)
    return load_folder(name, split, count)
