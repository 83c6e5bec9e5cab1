"""`devtune bench serve`: the real server under load from a separate process.

The servers run as their own uvicorn processes on 127.0.0.1 (``ServerProcess``, auth
off); this process is the load generator (``devtune.bench.loadgen``). One run measures::

    raw_decoder     every task's ONNX Runtime decoder on dequantized z, in this process,
                    at each batch size (samples/s): the ceiling the server is held to
    levels          closed loop at each concurrency, batching on (max_batch_size 64) and
                    off (1), native msgpack (/v1/predict, bodies from DeviceEncoder,
                    encoded once and replayed) and OIP JSON (/v2/models/{name}/infer,
                    the uint8 symbols as a JSON list); the on and off servers run side
                    by side and each level is measured on one right after the other, so
                    that other work on the machine weighs on both alike
    overload        open loop at twice the batched msgpack throughput, measured again just
                    before: answered, refused (503), lost (timeouts, connection errors)
    tasks_scaling   a generated bundle of 32 copies of one classification decoder, asked
                    for 1, 2, 4 ... 32 tasks at concurrency 1, in interleaved rounds;
                    p50 = a + b * tasks

and checks the targets (``targets`` in the JSON). Every level is bounded in time and in
requests, and every request has a timeout, so the run ends by itself. The client shares
the machine's cores with the server: its CPU time is reported next to the server's.

One job a module:

    plan.py       what one run does (Plan), resolved from the flags in cli.py
    bodies.py     the request bodies, encoded once before any clock starts
    decoders.py   the decoders alone, in this process: raw throughput, one pass
    servers.py    a server process, and what its /metrics and /proc say it spent
    levels.py     closed-loop levels on the batching and non-batching servers, and the overload
    scaling.py    the many-task bundle and p50 against the number of tasks asked
    targets.py    the targets, judged on the measured numbers
    sweep.py      one whole run: ServeReport
    report.py     the JSON object and the table
    cli.py        the flags, and the command
"""

from __future__ import annotations

from devtune.bench.serve.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
