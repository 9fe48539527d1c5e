"""`detector serve`: a registered version over HTTP (FastAPI on uvicorn), with a page for people.

    POST /predict   multipart form, one or more files in the field `images`: per image the
                    serving model's fields (p_ai_generated, verdict, threshold, model_version,
                    error) and the file's name as sent (echoed, never used as a path)
    GET  /          the page: drop or choose images, see each one's P(AI-generated) and verdict
    GET  /healthz   200 once a model is loaded and warmed, 503 before
    GET  /version   the version that answers, its threshold, and whether a token is required

Images go through the same preparation and threshold as `detector predict` and the registry's
MLflow serving model (components/serving/scoring.py), decoded in a worker thread, never on the
event loop. A request over `max_request_mb` is refused with 413, on its Content-Length and
while its body streams in; an image over `max_pixels` or in a format validation does not accept
gets its reason in `error`, and a request none of whose images could be scored gets 400.

Set the environment variable named by `token_env` (DETECTOR_API_TOKEN) to require
`Authorization: Bearer <token>` on /predict; unset, the service is open, as on a laptop.

Given an alias (the default, @champion), the service polls it every `poll_seconds`. When it
moves, the new version is loaded and warmed beside the old one, then swapped in with one
assignment: requests in flight finish on the version they started with, and none fails. Until a
first version loads (no champion yet), /healthz answers 503 and the service keeps trying.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field

from components.cli_support import component_main
from components.config import Strict
from components.contracts import CHAMPION, DEFAULT_REGISTERED_MODEL
from components.data.images import printable
from components.registry import loading
from components.registry.serving_model import example_jpeg
from components.serving import scoring

LOG = logging.getLogger("detector.serve")
PAGE = Path(__file__).with_name("page.html")


class ServeConfig(Strict):
    model_uri: str = f"models:/{DEFAULT_REGISTERED_MODEL}@{CHAMPION}"
    host: str = "127.0.0.1"  # loopback unless asked: 0.0.0.0 in the container
    port: int = Field(8000, ge=1, le=65535)
    max_request_mb: float = Field(32.0, gt=0, description="Larger requests get 413, on Content-Length or mid-stream.")
    max_images: int = Field(32, ge=1, description="Files per /predict request.")
    max_pixels: int = Field(scoring.MAX_PIXELS, ge=1, description="An image with more pixels is refused, before it is decoded.")
    poll_seconds: float = Field(30.0, gt=0, description="How often an alias is re-read; a moved alias is swapped in without a restart.")
    token_env: str = "DETECTOR_API_TOKEN"


class ServeResult(Strict):
    model_uri: str
    served_versions: list[str]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over the cap, and for a body that
    grows past it while it streams (chunked, or lying about its length)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received, started = 0, False

        async def counting():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracking(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, tracking)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = f'{{"detail": "request body over the {self.limit} byte limit (max_request_mb)"}}'.encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class Serving:
    """The version that answers, and the alias watch that replaces it. `current` is read once
    per request and replaced by one assignment, so a request never sees half a swap."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.current: scoring.Detector | None = None
        self.served: list[str] = []

    def refresh(self) -> None:
        """Load the version the URI names now, unless it is the one serving. Only the watch task
        calls it, so two loads never overlap."""
        version = str(loading.resolve_version(self.cfg.model_uri).version)
        if self.current is not None and self.current.version == version:
            return
        name = loading.REGISTRY_URI.fullmatch(self.cfg.model_uri)["name"]
        detector = dataclasses.replace(scoring.load_registered(f"models:/{name}/{version}"), max_pixels=self.cfg.max_pixels)
        detector.score([example_jpeg()])  # warm: the first forward pass builds the graph
        self.current = detector
        self.served.append(version)
        LOG.info("serving %s version %s", name, version)

    @property
    def follows_alias(self) -> bool:
        match = loading.REGISTRY_URI.fullmatch(self.cfg.model_uri)
        return bool(match and match["alias"])


def create_app(cfg: ServeConfig) -> FastAPI:
    serving = Serving(cfg)

    async def watch() -> None:
        """Load, then keep following an alias. Until a first version loads (no champion yet, the
        store unreachable) the service answers 503 and keeps trying; it never exits for it."""
        while True:
            try:
                await asyncio.to_thread(serving.refresh)
            except Exception as error:  # noqa: BLE001 - a failed load keeps the version that serves
                serving_now = serving.current.version if serving.current else None
                LOG.warning("could not load %s (serving version %s): %s", cfg.model_uri, serving_now, error)
            if serving.current is not None and not serving.follows_alias:
                return
            await asyncio.sleep(cfg.poll_seconds)

    @asynccontextmanager
    async def lifespan(app):
        watcher = asyncio.create_task(watch())
        try:
            yield
        finally:
            watcher.cancel()

    app = FastAPI(title="AI-generated image detector", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.serving = serving
    app.add_middleware(BodyLimit, limit=int(cfg.max_request_mb * 1024 * 1024))

    def authorise(request: Request) -> None:
        token = os.environ.get(cfg.token_env)
        if not token:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "a bearer token is required (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text()

    @app.get("/healthz")
    async def healthz():
        if serving.current is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "model_version": serving.current.version}

    @app.get("/version")
    async def version():
        detector = serving.current
        if detector is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {
            "model_uri": cfg.model_uri,
            "model_version": detector.version,
            "threshold": detector.threshold_ai,
            "token_required": bool(os.environ.get(cfg.token_env)),
        }

    @app.post("/predict")
    async def predict(request: Request):
        authorise(request)
        detector = serving.current  # this request's version, whatever the watch swaps meanwhile
        if detector is None:
            raise HTTPException(503, "no model loaded yet")
        form = await request.form(max_files=cfg.max_images, max_fields=cfg.max_images)
        uploads = [item for item in form.getlist("images") if hasattr(item, "read")]
        if not uploads:
            raise HTTPException(400, "send one or more image files in the multipart field 'images'")
        names = [printable(upload.filename or f"image {index}")[:200] for index, upload in enumerate(uploads, 1)]
        images = [await upload.read() for upload in uploads]
        answers = await asyncio.to_thread(detector.score, images)
        rows = [{"name": name, **answer.model_dump()} for name, answer in zip(names, answers)]
        if all(answer.error is not None for answer in answers):
            return JSONResponse({"detail": "no image could be scored", "predictions": rows}, status_code=400)
        return {"predictions": rows}

    return app


def run(cfg: ServeConfig) -> ServeResult:
    import uvicorn

    app = create_app(cfg)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")
    return ServeResult(model_uri=cfg.model_uri, served_versions=app.state.serving.served)


def main(argv: list[str] | None = None) -> None:
    component_main("detector serve", __doc__, ServeConfig, run, argv)


if __name__ == "__main__":
    main()
