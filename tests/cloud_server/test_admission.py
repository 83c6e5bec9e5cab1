"""The admission gate: inference requests beyond the limit are refused at once, the rest pass."""

from __future__ import annotations

import asyncio

import httpx
from starlette.types import Receive, Scope, Send

from cloud_server.admission import AdmissionGate
from cloud_server.metrics import Metrics


class SlowApp:
    """Answers 200 once released; counts what reached it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.reached = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


async def _burst(paths: list[str], limit: int) -> tuple[list[httpx.Response], SlowApp, AdmissionGate, Metrics]:
    inner, metrics = SlowApp(), Metrics()
    gate = AdmissionGate(inner, limit=limit, metrics=metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://test") as client:
        pending = [asyncio.create_task(client.post(path, content=b"x")) for path in paths]
        while inner.reached + sum(task.done() for task in pending) < len(paths):
            await asyncio.sleep(0.001)
        inner.release.set()
        answers = await asyncio.gather(*pending)
    return answers, inner, gate, metrics


def test_beyond_the_limit_inference_requests_get_503_with_retry_after_before_reaching_the_app() -> None:
    answers, inner, gate, metrics = asyncio.run(_burst(["/v1/predict"] * 3 + ["/v2/models/m/infer"] * 3, 2))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 503, 503, 503, 503]
    assert inner.reached == 2
    for refused in (a for a in answers if a.status_code == 503):
        assert refused.headers["retry-after"] == "1"
        assert "capacity" in refused.json()["detail"]
        # Refused before routing, answered as its route would: OIP clients show only "error".
        oip = refused.request.url.path.startswith("/v2/")
        assert refused.json()["error"] == ("overloaded: " + refused.json()["detail"] if oip else "overloaded")
    assert metrics.registry.get_sample_value("devtune_refused_total") == 4
    assert gate.in_flight == 0


def test_other_routes_are_not_counted_or_refused() -> None:
    answers, inner, gate, _ = asyncio.run(_burst(["/admin/models", "/v2/models/m", "/metrics"] * 2, 1))
    assert [a.status_code for a in answers] == [200] * 6
    assert inner.reached == 6 and gate.in_flight == 0
