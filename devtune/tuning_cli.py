"""`devtune tune` and `devtune push`: add a task in the cloud without touching devices."""

from __future__ import annotations

import argparse

__all__ = ["add_tuning_commands"]


def add_tuning_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Registers the subcommands; written in issue 5."""
