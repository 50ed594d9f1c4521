"""The demo's web app (FastAPI, served by uvicorn): the page and its static files, and the JSON/PNG API over a
`Demo`. Every error reaches the page as one line, `{"detail": ...}`, with its HTTP status."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
import uvicorn

# Request at module level: FastAPI reads the endpoints' (string) annotations from this module's globals.
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from segnet_bvlc.dataset import camvid
from segnet_bvlc.demo.errors import DemoError
from segnet_bvlc.demo.images import png_bytes, upload_kind
from segnet_bvlc.demo.state import Demo
from segnet_bvlc.evaluation.evaluate import read_label_png

STATIC = Path(__file__).resolve().parent / "static"
THUMB = (160, 120)
DRAIN_BYTES = 64 << 20  # how much of a too-large upload is read (and dropped) before the 413 goes out


def _one_line(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": " ".join(str(message).split())}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DemoError)
    async def demo_error(_request, exc: DemoError):
        return _one_line(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return _one_line(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return _one_line(exc.status_code, exc.detail if isinstance(exc.detail, str) else "error")

    @app.exception_handler(Exception)
    async def any_error(_request, exc: Exception):  # the server keeps serving; the page gets one line
        return _one_line(500, f"{type(exc).__name__}: {exc}")


async def _read_upload(request: Request, limit: int) -> bytes:
    """The request body, or DemoError 413 past `limit` bytes. Too large: the rest is read and dropped (up to
    DRAIN_BYTES more), so that the client, still sending, gets the 413 and its reason rather than a reset
    connection; nothing of it is kept."""
    length = request.headers.get("content-length", "")
    declared = int(length) if length.isdigit() else None
    chunks, size, too_big = [], 0, declared is not None and declared > limit
    async for chunk in request.stream():
        size += len(chunk)
        too_big = too_big or size > limit
        if too_big:
            if size > limit + DRAIN_BYTES:
                break
            continue
        chunks.append(chunk)
    if too_big:
        amount = f"{declared / 2**20:.1f} MiB" if declared else "more than that"
        raise DemoError(413, f"the upload is {amount}, the limit is {limit / 2**20:g} MiB (--max-upload-mb)")
    return b"".join(chunks)


def _add_image_routes(app: FastAPI, demo: Demo) -> None:
    @app.get("/api/gallery")
    def gallery():
        return [{"id": s.id, "name": s.name, "thumb": f"/api/image/{s.id}?thumb=1", "url": f"/api/image/{s.id}",
                 "gt": s.gt_path is not None} for s in demo.gallery.values()]

    @app.get("/api/image/{image_id}")
    def image(image_id: str, thumb: bool = False):
        src = demo.source(image_id)
        if thumb:
            small = cv2.resize(src.image(), THUMB, interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
            return Response(buf.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})
        if src.path is not None and src.path.suffix.lower() == ".png":
            return Response(src.path.read_bytes(), media_type="image/png")
        return Response(png_bytes(np.ascontiguousarray(src.image()[..., ::-1])), media_type="image/png")

    @app.get("/api/gt/{image_id}")
    def ground_truth(image_id: str):
        src = demo.source(image_id)
        if src.gt_path is None:
            raise DemoError(404, f"{image_id} has no ground truth")
        return Response(png_bytes(camvid.colourise(read_label_png(src.gt_path))), media_type="image/png")

    @app.post("/api/upload")
    async def upload(request: Request):
        kind = request.headers.get("content-type", "")
        upload_kind(kind)  # an unsupported type is refused before the body is read
        data = await _read_upload(request, demo.max_upload_bytes)
        name = unquote(request.headers.get("x-filename", "")) or "upload"
        src = await run_in_threadpool(demo.upload, data, kind, Path(name).name)
        h, w = src.bgr.shape[:2]
        return {"id": src.id, "name": src.name, "width": w, "height": h, "url": f"/api/image/{src.id}"}


def _add_prediction_routes(app: FastAPI, demo: Demo) -> None:
    @app.get("/api/predict")
    def predict(image: str, model: str, samples: int = 0, seed: int | None = None):
        return demo.predict(image, model, samples, seed).body

    @app.get("/api/result/{result_id}/{kind}.png")
    def result_png(result_id: str, kind: str):
        return Response(demo.png(demo.result(result_id), kind), media_type="image/png")

    @app.get("/api/pixel")
    def pixel(result: str, x: int, y: int):
        return demo.pixel(demo.result(result), x, y)


def create_app(demo: Demo) -> FastAPI:
    app = FastAPI(title="SegNet demo", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.demo = demo
    _add_error_handlers(app)

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/config")
    def config():
        return demo.config()

    _add_image_routes(app, demo)
    _add_prediction_routes(app, demo)
    return app


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port (None when it can)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"cannot resolve host {host!r} ({e.strerror})"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            return f"cannot listen on {host}:{port} ({e.strerror}; PORT= picks another port)"
    return None


def serve(demo: Demo, host: str, port: int) -> None:
    """Serve the demo until Ctrl-C (uvicorn's own handling stops it)."""
    uvicorn.run(create_app(demo), host=host, port=port, log_level="warning", access_log=False)
