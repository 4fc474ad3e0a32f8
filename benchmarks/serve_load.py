"""A bounded load test of `medattn serve` on loopback: N requests at concurrency C, p50/p99 latency, errors.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_load.py                       # trains a small BreastMNIST run
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_load.py --run runs/breast --backend onnx --requests 500

Each request uploads a real BreastMNIST test image as PNG. The server runs in this process (uvicorn in a thread),
so the figures include HTTP, multipart parsing, content sniffing, batching and the whole prediction pipeline.
Writes results/serve_load.json and .md.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import write_results

ROOT = Path(__file__).resolve().parents[1]
BREAST = ROOT.parent / "shared" / "data" / "medmnist" / "breastmnist.npz"


def _train(work: Path) -> Path:
    from medattn.config import RunConfig
    from medattn.engine.trainer import fit
    from medattn.runs import prepare_run_dir

    config = RunConfig()
    config.data.path, config.train.epochs, config.train.threads = str(BREAST), 2, 1
    run = prepare_run_dir(work / "breast", resume=False, force=True)
    fit(config, run)
    return run


def _pngs(count: int) -> list[bytes]:
    from PIL import Image

    images = np.load(BREAST)["test_images"][:count]
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def load(run: Path, *, backend: str, requests: int, concurrency: int) -> dict:
    import httpx
    import uvicorn

    from medattn.serve.app import create_app

    app = create_app(run, backend=backend)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/predict"
    bodies = _pngs(64)
    latencies, errors = [], 0
    with httpx.Client(timeout=60) as client:

        def one(i: int):
            started = time.perf_counter()
            answer = client.post(url, files={"file": (f"{i}.png", bodies[i % len(bodies)], "image/png")})
            return time.perf_counter() - started, answer.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for seconds, status in pool.map(one, range(requests)):
                latencies.append(seconds)
                errors += status != 200
        wall = time.perf_counter() - started
    server.should_exit = True
    cuts = statistics.quantiles(latencies, n=100)
    batches = app.state.batcher.batches
    return {
        "backend": backend,
        "requests": requests,
        "concurrency": concurrency,
        "errors": errors,
        "p50_ms": 1000 * cuts[49],
        "p99_ms": 1000 * cuts[98],
        "requests_per_second": requests / wall,
        "mean_batch": sum(batches) / len(batches),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a run directory (default: train a small BreastMNIST run)")
    parser.add_argument("--backend", default="torch,onnx", help="comma-separated: torch, onnx, onnx-int8")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "results" / "serve_load"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        run = Path(args.run) if args.run else _train(Path(work))
        backends = args.backend.split(",")
        if any(b != "torch" for b in backends) and not (run / "model.onnx").is_file():
            from medattn.export.to_onnx import export_onnx

            export_onnx(run, quantize="int8" if "onnx-int8" in backends else None)
        rows = [load(run, backend=b, requests=args.requests, concurrency=args.concurrency) for b in backends]
    lines = [
        f"`medattn serve` on loopback: {args.requests} requests at concurrency {args.concurrency}, "
        "one BreastMNIST PNG each.\n",
        "| backend | p50 latency | p99 latency | requests/s | errors | mean batch |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['backend']} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['requests_per_second']:.1f} | "
            f"{r['errors']} | {r['mean_batch']:.1f} |"
            for r in rows
        ),
    ]
    write_results(args.out, {"runs": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
