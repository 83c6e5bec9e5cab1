"""Link emulation: the real server and the real device client, joined by a slow network.

Two network namespaces, "cloud" and "device", joined by a veth pair with a private /30
from 10.255.0.0/16. tbf on each veth end's egress sets the rate, both ways. This kernel
has no netem, so the round-trip delay comes from a TCP relay in the device namespace
that holds every chunk for rtt/2 in each direction (a delay line per direction, in
order, connections independent; see ``relay``)::

    device namespace                                         cloud namespace
    ┌─────────────────────────────────────────┐             ┌───────────────────────┐
    │ client ──► relay 127.0.0.1:P ──► veth ──┼── tbf ────► │ veth ──► server :PORT │
    │  (run /  (delay rtt/2 each way)  (.2)   │ ◄──── tbf ──┼─ (.1)                 │
    │   run_json)                             │             │  (spawn "cloud")      │
    └─────────────────────────────────────────┘             └───────────────────────┘
             counters(): bytes and drops read at the device veth and both tbf qdiscs

Nothing reaches another address: the client talks to the relay on the device
namespace's loopback, the relay to the cloud end of the veth. Leaving ``with Link(...)``
kills every process in both namespaces and deletes them, which removes the veth; names
carry the pid, and a later run deletes leftovers whose creator died (``remove_stale``).

Needs root, ``ip``, ``tc`` and the tbf qdisc; ``check_link_support()`` says what is
missing, and ``Link`` raises ``LinkUnsupported`` with that reason instead of pretending.
Not emulated: random loss (the relay sees a byte stream, not packets) and TCP's slow
start over the long round trip (the shaped hop itself has almost none).
"""

from __future__ import annotations

from devtune.link.counters import LinkCounters
from devtune.link.link import Link, Role
from devtune.link.shaping import TbfShape
from devtune.link.support import LinkUnsupported, check_link_support, require_link_support

__all__ = [
    "Link",
    "LinkCounters",
    "LinkUnsupported",
    "Role",
    "TbfShape",
    "check_link_support",
    "require_link_support",
]
