"""`devtune bench link`: split against cloud-only and device-only over emulated links, and auto.

For links of 1, 10 and 100 Mbit/s and round trips of 10, 50 and 150 ms (``--quick``: 1 and
10 Mbit/s at 50 ms), the real server runs in the link's cloud namespace and the real device
client in its device namespace (``stream.py``), sending test images one request at a time in
each mode::

    split        encoder on the device, the coded payload over the link (today's path)
    cloud-png    the image as PNG over the link; the server runs the bundle's encoder too
    cloud-jpeg   the image as JPEG at the quality that matches split's accuracy
    device       encoder and decoders on the device; nothing crosses the link
    auto         the client picks one of split, cloud (PNG) and device per request

The modes take turns in short rounds (5 samples each, fewer on slow links, the order
rotating), all from one device-side process, so that a load spike on the shared machine hits
every mode alike. It reports p50 / p99 latency per sample, frames per second, and the bytes
the link's veth counted each way during each mode's rounds next to the HTTP bodies and
headers the client sent (the difference is TCP/IP framing). The matched JPEG quality is found first, through the real server on
loopback: the lowest quality whose accuracy on every classification task is within 1 point
of split's (none matching: the highest tried, and the report says so). Where the link cannot run (not root, no tbf) it says why and exits 2.

    measure.py   the runs, the targets, the table and the plot
    stream.py    the device side, run in the device namespace
"""

from __future__ import annotations

import argparse
from pathlib import Path

from devtune.bench.bundles import DEFAULT_BUNDLE

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE,
                        help="bundle (default bundles/default, trained first if missing)")
    parser.add_argument("--data", default="shapes", help="data set the test images come from")
    parser.add_argument("--samples", type=int, default=None, help="timed samples per mode and link (default 100)")
    parser.add_argument("--accuracy-samples", type=int, default=None,
                        help="test images for the JPEG quality match (default 300)")
    parser.add_argument("--qualities", default="10,20,30,50,75,90,95", help="JPEG qualities to try")
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized: 1 and 10 Mbit/s at 50 ms, 30 samples per mode, 200 accuracy images")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="skip the plot")


def run(args: argparse.Namespace) -> int:
    from devtune.bench.link.measure import run as measure_run

    return measure_run(args)
