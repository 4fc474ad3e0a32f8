"""`medattn serve`: the API with FastAPI's TestClient (every rejection), batching, and the web page in Chromium."""

import base64
import gzip
import io
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from deploy_runs import deploy_runs  # noqa: E402

pytest.importorskip("fastapi", reason="FastAPI is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from medattn.serve.app import create_app  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return deploy_runs(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def client(runs):
    return TestClient(create_app(runs["classify"], token="s3cret", backend="onnx", max_bytes=200_000))


AUTH = {"Authorization": "Bearer s3cret"}


def _png(runs, index=1) -> bytes:
    return (runs["data"].parent / "img" / f"{index}.png").read_bytes()


def test_health_and_the_model_card(client, runs):
    assert client.get("/health").json() == {
        "status": "ok",
        "run": "classify",
        "task": "classification",
        "backend": "onnx",
    }
    card = client.get("/model", headers=AUTH).json()
    assert card["class_names"] == ["blob", "clear"]
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_answers_what_the_cli_predicts(client, runs):
    from explain_data import cli_json

    answer = client.post("/predict", files={"file": ("scan.bin", _png(runs), "application/octet-stream")}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    expected = cli_json("predict", runs["classify"], runs["data"].parent / "img" / "1.png")["predictions"][0]
    got = answer.json()["prediction"]
    assert got["class"] == expected["class"]
    assert got["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)


@pytest.mark.parametrize(
    ("headers", "body", "status", "words"),
    [
        ({}, b"", 401, "bearer token"),
        ({"Authorization": "Bearer wrong"}, b"", 401, "bearer token"),
        (AUTH, b"not an image at all, whatever its name says", 415, "judged by its content"),
        (AUTH, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 415, "cannot be read"),
        (AUTH, gzip.compress(b"\0" * 400), 415, "not a PNG"),
        (AUTH, b"\0" * 150_000 + b"x" * 100_000, 413, "over the limit"),
    ],
)
def test_rejections_are_json_with_their_status(client, headers, body, status, words):
    answer = client.post("/predict", files={"file": ("image.png", body, "image/png")}, headers=headers)
    assert answer.status_code == status
    assert words in answer.json()["error"]


def test_a_large_request_is_refused_before_its_body_is_read(client):
    answer = client.post("/predict", content=b"x" * 400_000, headers={**AUTH, "content-type": "multipart/form-data"})
    assert answer.status_code == 413
    assert client.get("/model").status_code == 401


def test_nothing_is_left_behind_and_concurrent_requests_are_batched(client, runs):
    root = client.app.state.root
    batcher = client.app.state.batcher
    before = len(batcher.batches)
    answers = [None] * 12

    def send(i):
        answers[i] = client.post("/predict", files={"file": ("x", _png(runs, i), "image/png")}, headers=AUTH)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.status_code == 200 for a in answers)
    assert max(batcher.batches[before:]) > 1  # requests that arrived together were predicted together
    assert list(root.iterdir()) == []  # every request's folder removed


def test_a_segmenter_answers_its_mask_and_volumes_and_an_npz_is_read(runs):
    client = TestClient(create_app(runs["segment"]))
    image = runs["segdata"] / "images" / "1.png"
    answer = client.post("/predict", files={"file": ("a", image.read_bytes(), "image/png")}).json()
    mask = answer["files"]["mask"]
    assert mask["media_type"] == "image/png"
    from PIL import Image

    labels = np.asarray(Image.open(io.BytesIO(base64.b64decode(mask["base64"]))))
    assert labels.shape == (24, 24)
    assert answer["prediction"]["volumes"]["foreground"] == float((labels == 1).sum())
    buffer = io.BytesIO()
    np.savez(buffer, image=np.asarray(Image.open(image)))
    again = client.post("/predict", files={"file": ("b.npz", buffer.getvalue(), "application/zip")}).json()
    assert again["prediction"]["volumes"] == answer["prediction"]["volumes"]


def test_explain_returns_an_overlay_png(runs):
    client = TestClient(create_app(runs["classify"]))
    answer = client.post("/explain", files={"file": ("x.png", _png(runs), "image/png")})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.content.startswith(b"\x89PNG")


def test_the_web_page_predicts_a_dropped_image_in_chromium(runs, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not at {CHROMIUM} (apt-get install chromium)")
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(runs["segment"]), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('card').textContent.includes('attention_unet')")
            page.set_input_files("#file", str(runs["segdata"] / "images" / "1.png"))
            page.wait_for_function("document.getElementById('result').textContent.includes('foreground')")
            text = page.text_content("#result")
            page.wait_for_function("document.getElementById('view').width === 24")
            page.screenshot(path=str(tmp_path / "page.png"))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert text.startswith("1.png: mask")
    assert " mm2" in text
    assert (tmp_path / "page.png").stat().st_size > 1000
