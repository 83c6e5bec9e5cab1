"""Users' own data: a folder of images with a task list and a label table.

The format, so a folder can be passed wherever a built-in data set name goes
(``devtune train --data FOLDER``, ``devtune tune --data FOLDER``)::

    FOLDER/
      tasks.json     {"tasks": [{"name": "ripe", "kind": "classification", "classes": ["no", "yes"],
                                 "weight": 2},
                                {"name": "weight", "kind": "regression", "units": "g"},
                                {"name": "stem", "kind": "dense", "classes": ["background", "stem"]}],
                      "held_out": ["weight"]}                        # optional
      labels.csv     file,split,ripe,weight,stem
                     img/001.jpg,train,yes,151.5,masks/001.png
                     img/002.jpg,val,no,98,masks/002.png
      img/...        any image Pillow reads; resized to 64x64 RGB (bilinear, as the device does)
      masks/...      dense labels: PNG of class indices (0..K-1), resized to 32x32 (nearest)

Paths in ``labels.csv`` are relative to FOLDER. ``split`` is train, val or test. A
classification cell is a class name from ``classes``; a regression cell is a number.
``weight`` (optional, default 1) scales the task's loss in joint training. ``held_out``
names tasks that ``devtune train`` leaves out, for ``devtune tune`` to add.

Every problem with a folder's content is a :class:`~shared.errors.DataError` that names
the file, the line and what to change; a folder that is not there, or a split that does
not exist, is a :class:`~shared.errors.ConfigError` (the option was wrong, not the data).
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.dataset import IMAGE_SIZE, MASK_SIZE, SPLIT_SIZES, Dataset, TaskInfo
from shared.errors import ConfigError, DataError

# DataError lives in shared.errors with the rest of the tree; still importable from here.
__all__ = ["LABELS_FILE", "TASKS_FILE", "DataError", "load_folder", "read_tasks"]

TASKS_FILE = "tasks.json"
LABELS_FILE = "labels.csv"
_FIXED_COLUMNS = ("file", "split")
_KINDS = ("classification", "regression", "dense")
_TASK_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # as the bundle manifest accepts


def read_tasks(folder: str | Path) -> tuple[list[TaskInfo], list[str]]:
    """The tasks and the held-out task names declared in ``FOLDER/tasks.json``."""
    path = Path(folder) / TASKS_FILE
    if not path.is_file():
        raise DataError(
            f"{path} not found: a data folder needs tasks.json like "
            '{"tasks": [{"name": "ripe", "kind": "classification", "classes": ["no", "yes"]}]}'
        )
    try:
        declared = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); fix the syntax") from exc
    if not isinstance(declared, dict) or not isinstance(declared.get("tasks"), list) or not declared["tasks"]:
        raise DataError(f'{path} must be an object with a non-empty "tasks" list')
    tasks = [_task_info(path, entry) for entry in declared["tasks"]]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise DataError(f"{path} declares a task twice: {names}; give every task its own name")
    held_out = declared.get("held_out", [])
    if not isinstance(held_out, list) or any(name not in names for name in held_out):
        raise DataError(f'{path}: "held_out" must list declared tasks ({names}), got {held_out!r}')
    return tasks, [str(name) for name in held_out]


def _task_info(path: Path, entry: Any) -> TaskInfo:
    if not isinstance(entry, dict):
        raise DataError(f"{path}: every task must be an object with name and kind, got {entry!r}")
    unknown = set(entry) - {"name", "kind", "classes", "units", "weight"}
    if unknown:
        raise DataError(f"{path}: task keys {sorted(unknown)} are not known; "
                        "use name, kind, classes, units, weight")
    name, kind = entry.get("name"), entry.get("kind")
    if not isinstance(name, str) or not _TASK_NAME.fullmatch(name) or name in _FIXED_COLUMNS:
        raise DataError(
            f"{path}: task name {name!r} must be lower case letters, digits and _, start with a letter, "
            "at most 32 characters, and not 'file' or 'split'"
        )
    if kind not in _KINDS:
        raise DataError(f"{path}: task {name!r} has kind {kind!r}; use one of {list(_KINDS)}")
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
        raise DataError(f"{path}: task {name!r} has weight {weight!r}; "
                        "use a positive number (loss weight, default 1)")
    classes = entry.get("classes")
    if kind == "regression":
        if classes is not None:
            raise DataError(f"{path}: regression task {name!r} takes no classes; "
                            "remove them or change the kind")
        units = entry.get("units")
        return TaskInfo(name, "regression", units=None if units is None else str(units), weight=float(weight))
    if not isinstance(classes, list) or len(classes) < 2 or len(set(map(str, classes))) != len(classes):
        raise DataError(f"{path}: {kind} task {name!r} needs \"classes\": "
                        "a list of at least 2 distinct names")
    return TaskInfo(name, kind, classes=[str(c) for c in classes], weight=float(weight))


def load_folder(folder: str | Path, split: str, count: int | None = None) -> Dataset:
    """One split of a user data folder as a :class:`Dataset` (images 64x64 RGB uint8)."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(
            f"data set {str(folder)!r} is neither built in (shapes, digits) nor a folder; a data folder "
            "holds tasks.json, labels.csv and the images (docs/device-tuning.md)"
        )
    if split not in SPLIT_SIZES:
        raise ConfigError(f"unknown split {split!r}; choose one of {sorted(SPLIT_SIZES)}")
    tasks, held_out = read_tasks(root)
    rows = _read_rows(root, tasks)
    chosen = [(line, row) for line, row in rows if row["split"] == split][:count]
    if not chosen:
        raise DataError(f"{root / LABELS_FILE} has no rows with split {split!r}; "
                        "add some or pick another split")
    images = np.stack([_read_image(root, line, row["file"]) for line, row in chosen])
    labels = {task.name: _labels(root, task, chosen) for task in tasks}
    return Dataset(root.name or str(root), images, labels, tasks, held_out=held_out)


def _read_rows(root: Path, tasks: list[TaskInfo]) -> list[tuple[int, dict[str, str]]]:
    path = root / LABELS_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: a data folder needs labels.csv with columns file, split, "
                        f"{', '.join(t.name for t in tasks)}")
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        names = [t.name for t in tasks]
        unknown = [c for c in columns if c not in (*_FIXED_COLUMNS, *names)]
        if unknown:
            raise DataError(f"{path}: unknown column(s) {unknown}; columns are file, split and the tasks "
                            f"of {TASKS_FILE} ({names})")
        missing = [c for c in (*_FIXED_COLUMNS, *names) if c not in columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; "
                            f"add them or remove the tasks from {TASKS_FILE}")
        rows = []
        for line, raw in enumerate(reader, start=2):  # line 1 is the header
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if None in raw:
                raise DataError(f"{path} line {line}: more cells than columns")
            if row["split"] not in SPLIT_SIZES:
                raise DataError(f"{path} line {line}: split {row['split']!r} "
                                f"is not one of {sorted(SPLIT_SIZES)}")
            rows.append((line, row))
    return rows


def _read_image(root: Path, line: int, relpath: str) -> npt.NDArray[np.uint8]:
    from PIL import Image, UnidentifiedImageError

    path = root / relpath
    if not relpath or not path.is_file():
        raise DataError(f"{root / LABELS_FILE} line {line}: image {path} not found; fix the file column")
    try:
        with Image.open(path) as opened:
            rgb = opened.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{root / LABELS_FILE} line {line}: {path} is not an image Pillow can read") from exc
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)  # as the device resizes
    return np.asarray(rgb, dtype=np.uint8)


def _labels(root: Path, task: TaskInfo, rows: list[tuple[int, dict[str, str]]]) -> np.ndarray:
    where = root / LABELS_FILE
    if task.kind == "regression":
        values = []
        for line, row in rows:
            cell = row[task.name]
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(f"{where} line {line}: regression task {task.name!r} "
                                f"needs a number, got {cell!r}")
            values.append(value)
        return np.asarray(values, dtype=np.float32)[:, None]  # (B, 1), as the built-in data
    classes = task.classes or []
    if task.kind == "classification":
        index = {name: k for k, name in enumerate(classes)}
        found = []
        for line, row in rows:
            cell = row[task.name]
            if cell not in index:
                raise DataError(f"{where} line {line}: {cell!r} is not a class of task {task.name!r}; "
                                f"use one of {classes}")
            found.append(index[cell])
        return np.asarray(found, dtype=np.int64)
    return np.stack([_read_mask(root, line, row[task.name], task) for line, row in rows]).astype(np.int64)


def _read_mask(root: Path, line: int, relpath: str, task: TaskInfo) -> npt.NDArray[np.uint8]:
    from PIL import Image, UnidentifiedImageError

    where = root / LABELS_FILE
    path = root / relpath
    if not relpath or not path.is_file():
        raise DataError(f"{where} line {line}: mask {path} of dense task {task.name!r} not found; "
                        "a dense cell is the path of a PNG of class indices")
    try:
        with Image.open(path) as opened:
            if opened.mode not in ("L", "P", "I", "I;16"):
                raise DataError(f"{where} line {line}: mask {path} is {opened.mode}; "
                                "save it as a single-channel PNG (mode L or P) whose pixel values "
                                "are class indices")
            mask = opened.resize((MASK_SIZE, MASK_SIZE), Image.Resampling.NEAREST)  # never blend classes
            values = np.asarray(mask)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where} line {line}: {path} is not an image Pillow can read") from exc
    classes = task.classes or []
    if values.size and (int(values.max()) >= len(classes) or int(values.min()) < 0):
        raise DataError(f"{where} line {line}: mask {path} holds class index {int(values.max())}, task "
                        f"{task.name!r} has {len(classes)} classes ({classes}); "
                        f"pixel values must be 0..{len(classes) - 1}")
    return values.astype(np.uint8)
