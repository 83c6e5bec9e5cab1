"""The sentences generator and users' text folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from models.textdata import load_text, load_text_folder, make_sentences
from shared.errors import ConfigError, DataError


def _words(texts: list[str]) -> set[str]:
    return {w for t in texts for w in re.findall(r"[a-z0-9]+", t.lower())}


def test_seeded_and_fixed_splits() -> None:
    a, b = make_sentences("train", 200), make_sentences("train", 200)
    assert a.texts == b.texts and all(np.array_equal(a.labels[k], b.labels[k]) for k in a.labels)
    assert make_sentences("train", 200, seed=1).texts != a.texts
    assert make_sentences("val", 200).texts != a.texts


def test_test_wording_differs_from_training() -> None:
    train, test = make_sentences("train"), make_sentences("test")
    assert not set(test.texts) & set(train.texts)
    unseen = _words(test.texts) - _words(train.texts)
    assert {"superb", "tablets", "hardly"} <= unseen  # held-out synonyms, nouns, negators


def test_tasks_kinds_and_held_out() -> None:
    data = make_sentences("val", 300)
    kinds = {t.kind for t in data.tasks if t.name not in data.held_out}
    assert len([t for t in data.tasks if t.name not in data.held_out]) >= 4 and kinds == {"classification", "regression"}
    assert data.held_out == ["tense"] and len(data) == 300
    for task in data.tasks:  # every class occurs: no task is constant
        if task.classes:
            assert set(np.unique(data.labels[task.name])) == set(range(len(task.classes)))
    assert data.labels["count"].shape == (300, 1)


def _folder(tmp_path: Path, rows: str) -> Path:
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": [
        {"name": "mood", "kind": "classification", "classes": ["sad", "happy"]},
        {"name": "stars", "kind": "regression"}]}))
    (tmp_path / "labels.csv").write_text("text,split,mood,stars\n" + rows)
    return tmp_path


def test_text_folder(tmp_path: Path) -> None:
    folder = _folder(tmp_path, '"Great, really",train,happy,5\nawful,train,sad,1\nok,test,happy,3\n')
    data = load_text(str(folder), "train")
    assert data.texts == ["Great, really", "awful"]
    assert data.labels["mood"].tolist() == [1, 0] and data.labels["stars"].shape == (2, 1)


def test_text_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="line 2.*'meh' is not a class"):
        load_text_folder(_folder(tmp_path, "hello,train,meh,2\n"), "train")
    with pytest.raises(DataError, match="line 2: the text cell is empty"):
        load_text_folder(_folder(tmp_path, ",train,sad,2\n"), "train")
    with pytest.raises(ConfigError, match="neither built in"):
        load_text_folder(tmp_path / "nope", "train")
