"""Progress bars on stderr, shown only when someone is watching.

    for batch in progress(batches, "represent", unit="batch"):   # wrap an iterable
        ...
    bar = progress(total=steps, desc="train", unit="step")        # or drive it by hand
    bar.update(1)
    bar.set_postfix(loss="0.123")
    bar.close()

A bar is drawn only when stderr is a terminal and tqdm (from the [train] extra) is
installed: output redirected to a file, CI and the tests get no bar at all, and stdout
(``--json``) is never touched. Log lines emitted while a bar runs are written through
tqdm, so the bar is redrawn under them instead of being torn. Without a bar the returned
object still iterates and takes ``update`` / ``set_postfix`` / ``close``, so callers need
no second code path.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

__all__ = ["Progress", "bars_shown", "progress"]

T = TypeVar("T")


def bars_shown() -> bool:
    """True when a progress bar would be drawn: stderr is a terminal and tqdm is installed."""
    stream = sys.stderr
    interactive = stream is not None and hasattr(stream, "isatty") and stream.isatty()
    return bool(interactive) and importlib.util.find_spec("tqdm") is not None


class Progress(Generic[T]):
    """An iterable with ``update``, ``set_postfix`` and ``close``: a tqdm bar, or nothing visible."""

    def __init__(self, iterable: Iterable[T] | None, bar: Any = None) -> None:
        self._iterable = iterable
        self._bar = bar  # a tqdm instance, or None when nothing is drawn
        self._redirect: AbstractContextManager[None] | None = None
        if bar is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()

    def __iter__(self) -> Iterator[T]:
        source = self._bar if self._bar is not None else self._iterable
        try:
            yield from (() if source is None else source)
        finally:
            self.close()

    def update(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def set_postfix(self, **values: object) -> None:
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(iterable: Iterable[T] | None = None, desc: str = "", *, total: int | None = None,
             unit: str = "it", enabled: bool = True) -> Progress[T]:
    """``iterable`` (or a bar of ``total`` steps to ``update``) with a bar on stderr when it is a
    terminal. ``enabled=False`` never draws one (a caller that has its own reason to be quiet)."""
    if not (enabled and bars_shown()):
        return Progress(iterable)
    from tqdm import tqdm

    bar = tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)
    return Progress(iterable, bar)
