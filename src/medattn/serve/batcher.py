"""Requests that arrive together are predicted together: one call of the task's `predict` per batch.

A worker thread takes the first waiting upload, gathers whatever else arrives within `wait` seconds (up to
`size`), and predicts them in one call, so the run is loaded once and the network sees them back to back. A batch
that fails is retried file by file, so one bad upload answers only its own request with the error.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from pathlib import Path


class Batcher:
    def __init__(self, predict, *, size: int = 16, wait: float = 0.01) -> None:
        self.predict = predict  # predict(files, out_dir) -> list of per-file rows, in order
        self.size, self.wait = size, wait
        self.waiting: queue.Queue = queue.Queue()
        self.batches: list[int] = []  # sizes of the batches run, for tests and the load script
        threading.Thread(target=self._work, daemon=True, name="medattn-batcher").start()

    def submit(self, file: Path, out_dir: Path) -> Future:
        future: Future = Future()
        self.waiting.put((file, out_dir, future))
        return future

    def _work(self) -> None:
        while True:
            batch = [self.waiting.get()]
            while len(batch) < self.size:
                try:
                    batch.append(self.waiting.get(timeout=self.wait))
                except queue.Empty:
                    break
            self.batches.append(len(batch))
            self._run(batch)

    def _run(self, batch: list) -> None:
        try:
            rows = self.predict([file for file, _, _ in batch], [out for _, out, _ in batch])
        except Exception as error:  # noqa: BLE001  (answered to the requests, one by one below)
            if len(batch) == 1:
                batch[0][2].set_exception(error)
                return
            for item in batch:
                self._run([item])
            return
        for (_, _, future), row in zip(batch, rows, strict=True):
            future.set_result(row)
