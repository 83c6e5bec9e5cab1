"""The one JSON writer of the benchmarks: a table for people, or one JSON object, and a file.

With ``--json`` the one JSON object must be all that reaches stdout, whatever a server or
a progress bar started during the measurement prints: fd 1 points at stderr meanwhile.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

__all__ = ["emit_report", "save_figure", "stdout_to_stderr"]

log = logging.getLogger("devtune")

Report = TypeVar("Report")


@contextmanager
def stdout_to_stderr() -> Iterator[IO[str]]:
    """Point fd 1 at stderr (child processes started meanwhile inherit that); yield the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(saved), "w") as real:
            yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def emit_report(
    args: argparse.Namespace,
    measure: Callable[[], Report],
    to_json: Callable[[Report], dict[str, Any]],
    render: Callable[[Report], str],
) -> int:
    """Run a benchmark; print its table, or with ``args.json`` one JSON object; write that to ``args.out``."""
    if args.json:
        with stdout_to_stderr() as stdout:
            document = to_json(measure())
            stdout.write(json.dumps(document) + "\n")
    else:
        report = measure()
        document = to_json(report)
        print(render(report))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2) + "\n")
        log.info("wrote %s", out)
    return 0


def save_figure(figure: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG at ``path`` (its folder made), then free it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    log.info("wrote %s", path)
