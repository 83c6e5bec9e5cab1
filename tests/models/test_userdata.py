"""Users' own data folders: loaded as a Dataset, and every mistake named with what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data import load_dataset
from models.userdata import load_folder, read_tasks
from shared.errors import BundleError, ConfigError, DataError, DeviceTuningError

TASKS = {
    "tasks": [
        {"name": "ripe", "kind": "classification", "classes": ["no", "yes"], "weight": 2},
        {"name": "weight", "kind": "regression", "units": "g"},
        {"name": "stem", "kind": "dense", "classes": ["background", "stem"]},
    ],
    "held_out": ["weight"],
}


def make_folder(root: Path, rows: int = 6, tasks: dict[str, object] | None = None) -> Path:
    """A small valid folder: 40x30 RGB JPEGs and PNGs, 16x16 masks, 2/3 train and 1/3 val."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "tasks.json").write_text(json.dumps(tasks or TASKS))
    lines = ["file,split,ripe,weight,stem"]
    for k in range(rows):
        pixels = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
        name = f"img/{k}.{'png' if k % 2 else 'jpg'}"
        Image.fromarray(pixels).save(root / name)
        mask = np.zeros((16, 16), np.uint8)
        mask[: k + 1] = 1
        Image.fromarray(mask).save(root / f"masks/{k}.png")
        split = "val" if k % 3 == 2 else "train"
        lines.append(f"{name},{split},{'yes' if k % 2 else 'no'},{100 + k * 1.5},masks/{k}.png")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def write_labels(root: Path, *lines: str) -> None:
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def test_a_folder_loads_as_a_dataset(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "fruit")
    train = load_folder(folder, "train")
    assert len(train) == 4 and train.name == "fruit"
    assert train.images.shape == (4, 64, 64, 3) and train.images.dtype == np.uint8
    assert [t.name for t in train.tasks] == ["ripe", "weight", "stem"]
    assert [t.weight for t in train.tasks] == [2.0, 1.0, 1.0]
    assert train.held_out == ["weight"]
    assert train.labels["ripe"].tolist() == [0, 1, 1, 0]  # rows 0, 1, 3, 4
    assert train.labels["weight"].shape == (4, 1)
    assert train.labels["weight"][:, 0].tolist() == pytest.approx([100, 101.5, 104.5, 106])
    mask = train.labels["stem"]
    assert mask.shape == (4, 32, 32) and set(np.unique(mask)) == {0, 1}
    assert mask[0, :2].all() and not mask[0, 2:].any()  # row 0 of 16 -> rows 0-1 of 32, nearest
    assert len(load_folder(folder, "val")) == 2
    assert len(load_folder(folder, "train", count=3)) == 3


def test_load_dataset_takes_a_folder_path(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "fruit")
    data = load_dataset(str(folder), "val")
    assert len(data) == 2 and data.labels["ripe"].tolist() == [0, 1]
    with pytest.raises(ConfigError, match="neither built in"):  # a wrong --data, not a broken folder
        load_dataset(str(tmp_path / "nowhere"), "train")
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        load_dataset(str(folder), "dev")
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        load_dataset("shapes", "dev")


def test_a_spreadsheet_export_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "d")
    labels = folder / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbf" + labels.read_bytes().replace(b"\n", b"\r\n"))
    assert len(load_folder(folder, "train")) == 4


def test_missing_tasks_json(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "d")
    (folder / "tasks.json").unlink()
    with pytest.raises(DataError, match=r"tasks\.json not found"):
        load_folder(folder, "train")


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ({"tasks": []}, "non-empty"),
        ({"tasks": [{"name": "a", "kind": "ranking"}]}, "kind 'ranking'"),
        ({"tasks": [{"name": "Bad Name", "kind": "regression"}]}, "lower case"),
        ({"tasks": [{"name": "a", "kind": "classification", "classes": ["x"]}]}, "at least 2"),
        ({"tasks": [{"name": "a", "kind": "regression", "classes": ["x", "y"]}]}, "no classes"),
        ({"tasks": [{"name": "a", "kind": "regression"}], "held_out": ["b"]}, "held_out"),
        ({"tasks": [{"name": "a", "kind": "regression", "weight": -1}]}, "positive number"),
        ({"tasks": [{"name": "a", "kind": "regression", "size": 3}]}, r"task keys \['size'\]"),
    ],
)
def test_bad_tasks_json(tmp_path: Path, tasks: dict[str, object], message: str) -> None:
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    with pytest.raises(DataError, match=message):
        read_tasks(tmp_path)


def test_missing_labels_csv_and_missing_image(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "d")
    (folder / "labels.csv").unlink()
    with pytest.raises(DataError, match=r"labels\.csv not found"):
        load_folder(folder, "train")
    write_labels(folder, "file,split,ripe,weight,stem", "img/gone.png,train,yes,1,masks/0.png")
    with pytest.raises(DataError, match=r"line 2: image .*gone\.png not found"):
        load_folder(folder, "train")


def test_unknown_and_missing_columns(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "d")
    write_labels(folder, "file,split,ripe,weight,stem,colour", "img/0.jpg,train,no,1,masks/0.png,red")
    with pytest.raises(DataError, match=r"unknown column\(s\) \['colour'\]"):
        load_folder(folder, "train")
    write_labels(folder, "file,split,ripe,weight", "img/0.jpg,train,no,1")
    with pytest.raises(DataError, match=r"missing column\(s\) \['stem'\]"):
        load_folder(folder, "train")


def test_labels_of_the_wrong_kind(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "d")
    header = "file,split,ripe,weight,stem"
    write_labels(folder, header, "img/0.jpg,train,no,heavy,masks/0.png")
    with pytest.raises(DataError, match=r"line 2: regression task 'weight' needs a number, got 'heavy'"):
        load_folder(folder, "train")
    write_labels(folder, header, "img/0.jpg,train,no,1,masks/0.png", "img/1.png,train,maybe,1,masks/1.png")
    with pytest.raises(DataError, match=r"line 3: 'maybe' is not a class of task 'ripe'"):
        load_folder(folder, "train")
    write_labels(folder, header, "img/0.jpg,train,no,1,img/1.png")  # an RGB image where a mask belongs
    with pytest.raises(DataError, match="single-channel"):
        load_folder(folder, "train")
    Image.fromarray(np.full((8, 8), 5, np.uint8)).save(folder / "masks/bad.png")
    write_labels(folder, header, "img/0.jpg,train,no,1,masks/bad.png")
    with pytest.raises(DataError, match="class index 5"):
        load_folder(folder, "train")


def test_bad_split_and_empty_split(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "d")
    with pytest.raises(DataError, match="no rows with split 'test'"):
        load_folder(folder, "test")
    write_labels(folder, "file,split,ripe,weight,stem", "img/0.jpg,training,no,1,masks/0.png")
    with pytest.raises(DataError, match="split 'training'"):
        load_folder(folder, "train")


def test_data_errors_join_the_one_error_tree() -> None:
    import models.userdata

    assert models.userdata.DataError is DataError  # still importable where it used to live
    assert issubclass(DataError, DeviceTuningError) and not issubclass(DataError, BundleError)
    assert issubclass(DataError, ValueError)  # callers that caught ValueError keep working
    assert not issubclass(DataError, ConfigError) and not issubclass(ConfigError, DataError)
