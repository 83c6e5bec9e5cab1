"""Error bodies: the route decides whether "error" carries the message (OIP routes), not the URL."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter, FastAPI

from cloud_server.app import create_app
from cloud_server.errors import ErrorMessageRoute, install_error_handlers
from cloud_server.settings import CloudSettings
from shared.errors import BundleError

MESSAGE = "demo v3 is not loaded; load it first"


def _get_all(app: FastAPI, requests: list[tuple[str, str, dict[str, str]]]) -> list[httpx.Response]:
    async def ask() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://errors.test") as client:
            return [await client.request(method, path, headers=headers) for method, path, headers in requests]

    return asyncio.run(ask())


def test_the_route_class_decides_whatever_the_path() -> None:
    plain, messaged = APIRouter(), APIRouter(route_class=ErrorMessageRoute)

    @plain.get("/v2/looks-like-oip")
    async def plain_route() -> None:
        raise BundleError(MESSAGE)

    @messaged.get("/elsewhere")
    async def messaged_route() -> None:
        raise BundleError(MESSAGE)

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(plain)
    app.include_router(messaged)
    plain_answer, messaged_answer, wrong_method = _get_all(
        app, [("GET", "/v2/looks-like-oip", {}), ("GET", "/elsewhere", {}), ("POST", "/elsewhere", {})]
    )
    assert plain_answer.status_code == messaged_answer.status_code == 404
    assert plain_answer.json() == {"error": "bundle_error", "detail": MESSAGE}
    assert messaged_answer.json() == {"error": f"bundle_error: {MESSAGE}", "detail": MESSAGE}
    assert wrong_method.status_code == 405  # matched by path only: still the route's choice
    assert wrong_method.json()["error"] == "http_exception: Method Not Allowed"


def test_oip_routes_carry_the_message_from_auth_to_the_handler_and_v1_routes_do_not() -> None:
    app = create_app(CloudSettings(auth="on", api_keys=["secret"]))  # lifespan not run: nothing loaded
    key = {"Authorization": "Bearer secret"}
    keyless, missing, v1_keyless, v1_predict = _get_all(
        app,
        [
            ("GET", "/v2/models/tiny", {}),
            ("GET", "/v2/models/tiny", key),
            ("GET", "/v1/bundles", {}),
            ("GET", "/v1/predict", key),
        ],
    )
    assert keyless.status_code == 401
    assert keyless.json()["error"].startswith("http_exception: missing API key")
    assert missing.status_code == 404
    assert missing.json()["error"] == f"bundle_error: {missing.json()['detail']}"
    assert "not loaded" in missing.json()["detail"]
    assert v1_keyless.status_code == 401 and v1_keyless.json()["error"] == "http_exception"
    assert v1_predict.status_code == 405 and v1_predict.json()["error"] == "http_exception"
