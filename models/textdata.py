"""Text data sets: a seeded offline generator (``sentences``) and users' folders with a ``text`` column.

``sentences``: short reviews built from templates over word lists. Every list is cut in two:
train and val draw from the first part, test only from the second (held-out synonyms, nouns,
number forms and templates), so no test sentence can appear in training and a model scores
well on test only if it knows what the new words mean: where pre-training shows.

    task       kind            what decides it                       why a bag of words is not enough
    sentiment  classification  adjective polarity, flipped by "not"  the label is an XOR of two words
    topic      classification  the reviewed item's noun (4 topics)   a third of the texts name a second
                                                                     topic in a contrast clause
    count      regression      how many items (2..9)                 test writes numbers as digits
    negated    classification  is the statement negated              test uses other negators
    tense      classification  past or future (held out, for tuning)

The folder format is the image one (:mod:`models.userdata`) with ``text`` in place of
``file``: ``tasks.json`` as there (no dense tasks), ``labels.csv`` with columns
``text,split,<task>...``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.dataset import TaskInfo
from models.userdata import LABELS_FILE, _labels, read_tasks
from shared.errors import ConfigError, DataError

__all__ = ["TEXT_SPLIT_SIZES", "TextDataset", "load_text", "load_text_folder", "make_sentences"]

TEXT_SPLIT_SIZES = {"train": 4000, "val": 500, "test": 500}
_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}

# (train and val words, test words): the second part never appears outside test
_TOPICS = {
    "food": (["apples", "pizzas", "soups", "cakes", "salads", "burgers"], ["noodles", "pies", "tacos"]),
    "sports": (["matches", "races", "games", "tournaments", "fights"], ["marathons", "bouts", "regattas"]),
    "travel": (["flights", "hotels", "trains", "trips", "tours"], ["cruises", "hostels", "voyages"]),
    "tech": (["phones", "laptops", "apps", "cameras", "printers"], ["tablets", "gadgets", "smartwatches"]),
}
_POSITIVE = (["good", "great", "excellent", "lovely", "nice"], ["superb", "delightful", "terrific"])
_NEGATIVE = (["bad", "awful", "terrible", "dull", "poor"], ["dreadful", "lousy", "horrible"])
_NEGATORS = (["not", "never"], ["hardly", "by no means"])
_NUMBERS = (["two", "three", "four", "five", "six", "seven", "eight", "nine"], [str(n) for n in range(2, 10)])
_PAST = (["yesterday", "last week", "last month"], ["the other day", "a while ago"])
_FUTURE = (["tomorrow", "next week", "next month"], ["in a few days", "soon"])
_TEMPLATES = (
    ["{time} the {count} {noun} {verb}{adj}{other}.", "{time} I thought the {count} {noun} {verb}{adj}{other}."],
    ["Honestly, {time} those {count} {noun} {verb}{adj}{other}.", "{count} {noun}, {time}: they {verb}{adj}{other}."],
)
_CONTRAST = ([", unlike the {noun}", ", compared with the {noun}"], [", in contrast to the {noun}"])

TASKS = [
    TaskInfo("sentiment", "classification", classes=["negative", "positive"]),
    TaskInfo("topic", "classification", classes=list(_TOPICS)),
    TaskInfo("count", "regression", units="items"),
    TaskInfo("negated", "classification", classes=["no", "yes"]),
    TaskInfo("tense", "classification", classes=["past", "future"]),
]


@dataclass(frozen=True)
class TextDataset:
    """Texts and one label array per task: :class:`models.dataset.Dataset` with texts for images."""

    name: str
    texts: list[str]
    labels: dict[str, np.ndarray]
    tasks: list[TaskInfo]
    held_out: list[str] = field(default_factory=list)
    """Tasks present in the data that the default bundle is not trained on."""

    def __len__(self) -> int:
        return len(self.texts)


def _verb(future: bool, plain: bool, negator: str) -> str:
    """'were not ', 'will never be ', or (``plain``) 'are ': then only the time phrase tells the tense."""
    neg = f"{negator} " if negator else ""
    if plain:
        return f"are {neg}"
    return f"will {neg}be " if future else f"were {neg}"


def make_sentences(split: str, count: int | None = None, seed: int = 0) -> TextDataset:
    """One split of ``sentences``; the same (split, count, seed) always gives the same texts."""
    if split not in TEXT_SPLIT_SIZES:
        raise ConfigError(f"unknown split {split!r}; choose one of {sorted(TEXT_SPLIT_SIZES)}")
    n = TEXT_SPLIT_SIZES[split] if count is None else count
    part = 1 if split == "test" else 0
    rng = np.random.default_rng([seed, _SPLIT_SEEDS[split]])
    topics = list(_TOPICS)
    texts: list[str] = []
    labels: dict[str, list[float]] = {t.name: [] for t in TASKS}
    for _ in range(n):
        topic = int(rng.integers(len(topics)))
        positive, negated, future = (bool(rng.integers(2)) for _ in range(3))
        number = int(rng.integers(len(_NUMBERS[part])))
        other = ""
        if rng.random() < 1 / 3:
            rival = topics[(topic + 1 + int(rng.integers(len(topics) - 1))) % len(topics)]
            other = str(rng.choice(_CONTRAST[part])).format(noun=rng.choice(_TOPICS[rival][part]))
        words = _POSITIVE if positive else _NEGATIVE
        text = str(rng.choice(_TEMPLATES[part])).format(
            time=rng.choice((_FUTURE if future else _PAST)[part]),
            count=_NUMBERS[part][number],
            noun=rng.choice(_TOPICS[topics[topic]][part]),
            verb=_verb(future, bool(rng.random() < 0.5), str(rng.choice(_NEGATORS[part])) if negated else ""),
            adj=rng.choice(words[part]),
            other=other,
        )
        texts.append(text[0].upper() + text[1:])
        labels["sentiment"].append(positive != negated)
        labels["topic"].append(topic)
        labels["count"].append(number + 2)
        labels["negated"].append(negated)
        labels["tense"].append(future)
    arrays = {t.name: np.asarray(labels[t.name], dtype=np.int64) for t in TASKS}
    arrays["count"] = arrays["count"].astype(np.float32)[:, None]  # (B, 1), as the image data
    return TextDataset("sentences", texts, arrays, list(TASKS), held_out=["tense"])


def load_text_folder(folder: str | Path, split: str, count: int | None = None) -> TextDataset:
    """One split of a user text folder: tasks.json as for images, labels.csv with a text column."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"text data set {str(folder)!r} is neither built in (sentences) nor a folder; "
                          "a text folder holds tasks.json and labels.csv with columns text, split, <tasks>")
    if split not in TEXT_SPLIT_SIZES:
        raise ConfigError(f"unknown split {split!r}; choose one of {sorted(TEXT_SPLIT_SIZES)}")
    tasks, held_out = read_tasks(root)
    names = [t.name for t in tasks]
    for task in tasks:
        if task.kind == "dense" or task.name == "text":
            raise DataError(f"{root / 'tasks.json'}: task {task.name!r} ({task.kind}) cannot be a text task; "
                            "use classification or regression and a name other than 'text'")
    path = root / LABELS_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: a text folder needs labels.csv with columns text, split, "
                        f"{', '.join(names)}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        wanted = ["text", "split", *names]
        if sorted(columns) != sorted(wanted):
            raise DataError(f"{path}: columns are {columns}; a text folder needs exactly {wanted}")
        rows = []
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "") for k, v in raw.items() if k is not None}
            if row["split"].strip() not in TEXT_SPLIT_SIZES:
                raise DataError(f"{path} line {line}: split {row['split']!r} is not one of "
                                f"{sorted(TEXT_SPLIT_SIZES)}")
            if not row["text"].strip():
                raise DataError(f"{path} line {line}: the text cell is empty; write the text or drop the row")
            if row["split"].strip() == split:
                rows.append((line, {k: v.strip() for k, v in row.items()}))
    rows = rows[:count]
    if not rows:
        raise DataError(f"{path} has no rows with split {split!r}; add some or pick another split")
    labels = {task.name: _labels(root, task, rows) for task in tasks}
    return TextDataset(root.name or str(root), [row["text"] for _, row in rows], labels, tasks, held_out)


def load_text(name: str, split: str, count: int | None = None, seed: int = 0) -> TextDataset:
    """``sentences`` or a text folder, as ``--data`` names it."""
    if name == "sentences":
        return make_sentences(split, count, seed)
    return load_text_folder(name, split, count)
