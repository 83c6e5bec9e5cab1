"""What the server spent: its CPU time from /proc, and histograms from its /metrics page."""

from __future__ import annotations

import os

__all__ = ["process_cpu_seconds", "process_tree_cpu_seconds", "scrape_histogram", "scrape_labelled_histogram"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat(5)


def process_tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid`` and every live descendant (a server's worker processes; Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier += children
    own = process_cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(s for s in map(process_cpu_seconds, tree - {pid}) if s is not None)


def scrape_histogram(metrics_text: str, name: str) -> tuple[float, float]:
    """(sum, count) of an unlabelled Prometheus histogram in a /metrics page."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_sum "):
            total = float(line.split()[1])
        elif line.startswith(f"{name}_count "):
            count = float(line.split()[1])
    return total, count


def scrape_labelled_histogram(metrics_text: str, name: str, skip: str = "") -> tuple[float, float]:
    """(sum, count) of a labelled Prometheus histogram over all its label sets, but those whose
    labels contain ``skip`` (e.g. the /metrics route itself)."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        for suffix in ("_sum{", "_count{"):
            if line.startswith(name + suffix):
                labels, value = line[len(name) + len(suffix):].rsplit("} ", 1)
                if skip and skip in labels:
                    continue
                if suffix == "_sum{":
                    total += float(value)
                else:
                    count += float(value)
    return total, count
