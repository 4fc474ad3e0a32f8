"""The FastAPI app of `medattn serve RUN`: predictions, explanations and the model card of one run, and a web page.

POST /predict and /explain take a multipart field `file`; GET /model gives the card, /health the state, / the page,
/docs the OpenAPI documentation. Uploads are refused over `max_bytes` (413) or when their content is no readable
image (415); with a token, every route but / and /health wants `Authorization: Bearer TOKEN` (401). Each request
works in its own temporary folder under the server's, removed when it is answered. Errors are JSON: {"error": ...}.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations, imported inside create_app

import asyncio
import base64
import mimetypes
import secrets
import shutil
import tempfile
from pathlib import Path

from medattn.errors import MedattnError
from medattn.serve.uploads import UploadRejected, store

MAX_BYTES = 32 * 1024 * 1024


def _embedded(row: dict, folder: Path) -> tuple[dict, dict]:
    """The row with paths made bare names, and every file the prediction wrote into `folder`, base64-encoded."""
    shown, files = {}, {}
    for key, value in row.items():
        path = Path(value) if isinstance(value, str) else None
        if path is not None and path.is_file() and path.is_relative_to(folder):
            media = "image/png" if path.suffix == ".png" else mimetypes.guess_type(path.name)[0] or "application/gzip"
            files[key] = {
                "name": path.name,
                "media_type": media,
                "base64": base64.b64encode(path.read_bytes()).decode(),
            }
            value = path.name
        elif path is not None and path.is_absolute():
            value = path.name
        shown[key] = value
    return shown, files


def create_app(run: str | Path, *, token: str | None = None, backend: str = "torch", max_bytes: int = MAX_BYTES):
    import starlette.formparsers
    from fastapi import Depends, FastAPI, File, Request, UploadFile
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    from medattn.engine.loaded import reading
    from medattn.runs import read_json, require_run
    from medattn.serve.batcher import Batcher
    from medattn.serve.page import PAGE
    from medattn.tasks import task_for_run

    run = require_run(run)
    card, task = read_json(run / "model.json"), task_for_run(run)
    spatial_dims = int(card["model"]["spatial_dims"])
    # uploads up to the limit stay in memory while parsed: nothing spills into the system's temporary folder
    starlette.formparsers.MultiPartParser.spool_max_size = max(max_bytes + 65536, 1 << 20)
    root = Path(tempfile.mkdtemp(prefix="medattn-serve-"))
    with reading(run, backend=backend):  # fails now, not at the first request, when the export is missing
        from medattn.engine.loaded import load_run

        load_run(run)

    def predict(files: list[Path], folders: list[Path]) -> list[dict]:
        out = Path(tempfile.mkdtemp(dir=root, prefix="batch-"))
        try:
            with reading(run, backend=backend):
                payload = task.predict(run, files, tta=False, out_dir=out, overwrite=False, series=None)
            rows = payload["predictions"]
            for row, folder in zip(rows, folders, strict=True):  # what the batch wrote goes to each request's folder
                for key, value in row.items():
                    if isinstance(value, str) and Path(value).is_file() and Path(value).is_relative_to(out):
                        row[key] = str(shutil.move(value, folder / Path(value).name))
            return rows
        finally:
            shutil.rmtree(out, ignore_errors=True)

    batcher = Batcher(predict)
    app = FastAPI(title="medattn", description=f"{task.name} model {card['model']['name']} from {run.name}")
    app.state.batcher, app.state.root = batcher, root

    @app.exception_handler(UploadRejected)
    async def rejected(request: Request, error: UploadRejected):
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(MedattnError)
    async def refused(request: Request, error: MedattnError):
        return JSONResponse({"error": str(error)}, status_code=422)

    @app.middleware("http")
    async def limit(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes + 65536:  # before reading the body
            return JSONResponse({"error": f"request of {length} bytes is over the limit of {max_bytes}"}, 413)
        return await call_next(request)

    def authorised(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if token is not None and not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise UploadRejected(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)")

    async def upload(file: UploadFile) -> tuple[Path, Path]:
        folder = Path(tempfile.mkdtemp(dir=root, prefix="request-"))
        try:
            data = await file.read(max_bytes + 1)
            return store(data, folder, max_bytes=max_bytes, spatial_dims=spatial_dims), folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return PAGE

    @app.get("/health")
    async def health():
        return {"status": "ok", "run": run.name, "task": task.name, "backend": backend}

    @app.get("/model", dependencies=[Depends(authorised)])
    async def model_card():
        return card

    @app.post("/predict", dependencies=[Depends(authorised)])
    async def predict_upload(file: UploadFile = File(...)):
        path, folder = await upload(file)
        try:
            row = await asyncio.wrap_future(batcher.submit(path, folder))
            shown, files = _embedded(row, folder)
            return {"task": task.name, "backend": backend, "prediction": shown, "files": files}
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @app.post("/explain", dependencies=[Depends(authorised)])
    async def explain_upload(file: UploadFile = File(...)):
        from medattn.explain.command import run_explain

        path, folder = await upload(file)
        try:
            payload = await asyncio.to_thread(run_explain, run, [path], out=folder / "explained")
            png = next(iter(payload["explanations"][0]["files"].values()))["png"]
            return Response(Path(png).read_bytes(), media_type="image/png")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return app
