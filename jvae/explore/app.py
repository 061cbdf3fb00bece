"""The explorer's web application: its own three static files and a JSON/PNG API over an Explorer.

Nothing in a request names a file: the page, its script and its style sheet are a fixed table, and the
--image files are addressed by their index. Every refusal is a JSON object {"error": "..."} with a 4xx
status, and anything unexpected a 500 in the same shape; the server keeps running either way.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jvae.explore.explorer import MAX_UPLOAD_BYTES, ExploreError, Explorer, whole_number

STATIC = {  # URL path: (file in jvae/explore/static, media type)
    "/": ("page.html", "text/html; charset=utf-8"),
    "/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
    "/explore.css": ("explore.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    # the page loads only what this server serves; decoded images arrive as blobs
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
DRAIN_BYTES = 4 * MAX_UPLOAD_BYTES  # an oversized upload read (and dropped) to the end up to this size
UPLOADS_AT_ONCE = 4  # uploads received at once (each held whole, up to MAX_UPLOAD_BYTES); others wait
UPLOAD_WAIT_SECONDS = 30.0  # how long an upload waits for its turn before a 503


def _static(path: str) -> Response:
    name, media_type = STATIC[path]
    body = (resources.files("jvae.explore") / "static" / name).read_bytes()
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


def _png(body: bytes) -> Response:
    return Response(body, media_type="image/png", headers=SECURITY_HEADERS)


def _json(payload: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=SECURITY_HEADERS)


async def _read_upload(request: Request) -> bytes:
    """The request body, or a 413 once it passes MAX_UPLOAD_BYTES. Up to DRAIN_BYTES the rest is read and
    dropped before answering, so that a browser still sending its file receives the answer rather than a
    reset connection; a body declared or sent beyond that is answered at once."""
    header = request.headers.get("content-length")
    declared = None if header is None else whole_number(header.strip(), 2**63)
    if header is not None and declared is None:  # never wait for a body of a size no number here can hold
        digits = header.strip().isascii() and header.strip().isdigit()
        raise ExploreError(
            _too_large(DRAIN_BYTES + 1) if digits else "Content-Length is not a size in bytes",
            413 if digits else 400,
        )
    if declared is not None and declared > DRAIN_BYTES:
        raise ExploreError(_too_large(declared), 413)
    body = bytearray()
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > DRAIN_BYTES:
                break
            if received <= MAX_UPLOAD_BYTES:
                body += chunk
    except ClientDisconnect:
        raise ExploreError("the upload stopped before its end (the client went away)") from None
    if received > MAX_UPLOAD_BYTES:
        raise ExploreError(_too_large(received), 413)
    if not body:
        raise ExploreError("the upload is empty: send the image file's bytes as the request body")
    return bytes(body)


def _too_large(size: int) -> str:
    shown = f"{size / 2**20:.1f} MiB" if size <= DRAIN_BYTES else f"over {DRAIN_BYTES // 2**20} MiB"
    return f"the upload is {shown}; the explorer reads images up to {MAX_UPLOAD_BYTES // 2**20} MiB"


def create_app(explorer: Explorer, loopback_only: bool = True) -> ASGIApp:
    """The application; with `loopback_only` it answers only requests addressed to this machine by a
    loopback name, so a web page whose domain is re-pointed at 127.0.0.1 cannot use the model."""

    async def page(request: Request) -> Response:
        return _static(request.url.path)

    def model(request: Request) -> Response:
        return _json(explorer.describe())

    def decode(request: Request) -> Response:
        return _png(explorer.decode_png(request.query_params.multi_items()))

    uploads = asyncio.Semaphore(UPLOADS_AT_ONCE)

    async def encode(request: Request) -> Response:
        try:
            await asyncio.wait_for(uploads.acquire(), UPLOAD_WAIT_SECONDS)
        except TimeoutError:
            raise ExploreError("the explorer is busy with other uploads; try again", 503) from None
        try:
            data = await _read_upload(request)
            label = request.query_params.get("class")
            return _json(await run_in_threadpool(explorer.code_of_upload, data, label))
        finally:
            uploads.release()

    def image(request: Request) -> Response:
        return _png(explorer.input_png(request.path_params["index"]))

    def image_code(request: Request) -> Response:
        params = request.query_params
        return _json(explorer.code_of_file(request.path_params["index"], params.get("class")))

    def sample(request: Request) -> Response:
        params = request.query_params
        return _json(explorer.prior_code(params.get("seed"), params.get("class")))

    async def refused(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ExploreError):
            return _json({"error": str(exc)}, exc.status)
        if isinstance(exc, HTTPException):
            return _json({"error": exc.detail}, exc.status_code)
        return _json({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    routes = [Route(path, page) for path in STATIC] + [
        Route("/api/model", model),
        Route("/api/decode", decode),
        Route("/api/encode", encode, methods=["POST"]),
        Route("/api/images/{index:int}.png", image),
        Route("/api/images/{index:int}/code", image_code),
        Route("/api/sample", sample),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={ExploreError: refused, HTTPException: refused, Exception: refused},
    )
    return _Quiet(_LoopbackHosts(app) if loopback_only else app)


class _Quiet:
    """Keeps an error inside a request from reaching the server's log as a traceback: Starlette answers an
    unexpected exception with the 500 above and then raises it again for the server to print; here it ends
    instead (a request whose client went away gets no answer at all)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001 - answered (or already answered) as JSON, never printed
            if scope["type"] == "http" and not started:
                response = _json({"error": f"internal error: {type(exc).__name__}"}, 500)
                try:
                    await response(scope, receive, send)
                except Exception:  # noqa: BLE001, S110 - the client is gone; nothing more to tell it
                    pass


def host_name(header: str) -> str:
    """The name in a Host header without its port: `[::1]:8765` -> `::1`, `localhost:80` -> `localhost`."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class _LoopbackHosts:
    """Refuses requests whose Host header is not a loopback name (DNS rebinding)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(header).lower() not in LOOPBACK_NAMES:
                response = _json({"error": f"host {header!r} refused: this server answers 127.0.0.1"}, 421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
