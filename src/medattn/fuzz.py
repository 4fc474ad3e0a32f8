"""Damaged copies of real files, and what medattn's readers make of them: for tests/test_fuzz.py and
benchmarks/fuzz.py.

A mutant is the bytes of a real file after one of the damages files meet in the wild (bit flips, truncation,
inserted bytes, zeroed runs, a random body behind a valid header). Each target names its seed files, how to
write a mutant where the reader will look, and the reader. Every read ends in one outcome:

- `read`: it returned a well-formed result (for images: a channel-first array with finite values);
- `refused`: a MedattnError naming the file (what a user sees);
- anything else is a defect: `untyped:<Exception>`, `unnamed` (a typed error that does not name the file),
  `bad-array` (a half-read or non-finite array), `hang` (over the time limit) or `crash` (the process died).

Mutants run in a child process, so a hang or a crash in a decoder cannot take the caller with it.
"""

from __future__ import annotations

import gzip
import multiprocessing
import random
import shutil
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DAMAGES = ("bitflip", "truncate", "insert", "zero", "random_body")
DEFECTS_PREFIXES = ("untyped", "unnamed", "bad-array", "hang", "crash")


def is_defect(outcome: str) -> bool:
    return outcome.startswith(DEFECTS_PREFIXES)


def header_length(data: bytes, name: str) -> int:
    """Bytes of the format's header that a `random_body` mutant keeps intact."""
    if name.endswith(".png"):
        return 33  # signature + IHDR
    if name.endswith(".nii"):
        return 352 if data[:4] != b"\x1c\x02\x00\x00" else 544
    pixel_tag = data.rfind(b"\xe0\x7f\x10\x00")  # DICOM (7FE0,0010) PixelData, little endian
    if pixel_tag < 0:
        pixel_tag = data.rfind(b"\x7f\xe0\x00\x10")  # big endian
    return pixel_tag + 12 if pixel_tag > 0 else len(data) // 4


_ODD_VALUES = (None, "", "x", -1, 0, 1e308, float("nan"), [], {}, True, [1, 2, 3], {"a": 1})


def edit_document(data: bytes, name: str, rng: random.Random) -> bytes:
    """A JSON or YAML file that still parses, with one key removed or one value swapped for an odd one
    (what a hand edit or another tool's version does to a model card or a config)."""
    import json

    import yaml

    document = json.loads(data) if name.endswith(".json") else yaml.safe_load(data)
    parent, key = None, None
    node = document
    while isinstance(node, dict | list) and node and (parent is None or rng.random() < 0.6):
        parent = node
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        node = node[key]
    if parent is None:
        document = rng.choice(_ODD_VALUES)
    elif isinstance(parent, dict) and rng.random() < 0.4:
        del parent[key]
    else:
        parent[key] = rng.choice(_ODD_VALUES)
    if name.endswith(".json"):
        return json.dumps(document).encode()
    return yaml.safe_dump(document).encode()


def mutate(data: bytes, name: str, rng: random.Random) -> tuple[str, bytes]:
    """(damage, damaged bytes). A .gz seed is damaged inside its compression half of the time (gzip's CRC
    would otherwise catch almost everything before the format's own reader sees it); a JSON or YAML seed gets
    a structural edit half of the time (byte damage mostly stops at the parser)."""
    if name.endswith(".gz") and rng.random() < 0.5:
        damage, inner = mutate(gzip.decompress(data), name[:-3], rng)
        return f"{damage}(inside gzip)", gzip.compress(inner, mtime=0)
    if name.endswith((".json", ".yaml")) and rng.random() < 0.5:
        return "edit", edit_document(data, name, rng)
    damage = rng.choice(DAMAGES)
    body = bytearray(data)
    size = len(body)
    if damage == "bitflip":
        for _ in range(rng.randint(1, 16)):
            body[rng.randrange(size)] ^= 1 << rng.randrange(8)
    elif damage == "truncate":
        del body[rng.randrange(size) :]
    elif damage == "insert":
        at = rng.randrange(size + 1)
        body[at:at] = rng.randbytes(rng.randint(1, 64))
    elif damage == "zero":
        start = rng.randrange(size)
        length = min(size - start, rng.choice((1, 4, 16, 256, 4096)))
        body[start : start + length] = bytes(length)
    else:
        keep = min(header_length(data, name), size)
        body[keep:] = rng.randbytes(size - keep)
    return damage, bytes(body)


def check_image(result) -> str:
    """`read` for a channel-first array with finite values, else `bad-array`."""
    array = result[0]
    if not isinstance(array, np.ndarray) or array.ndim not in (3, 4) or 0 in array.shape:
        return "bad-array"
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return "bad-array"
    return "read"


@dataclass
class Target:
    """One format: its seed files, where a mutant goes (`place(mutant_bytes, seed) -> path to read`) and
    the read (`read(path) -> outcome`, raising whatever the reader raises)."""

    name: str
    seeds: list[Path]
    place: Callable[[bytes, Path], Path]
    read: Callable[[Path], str]


def outcome_of(target: Target, path: Path) -> tuple[str, str]:
    """(outcome, the traceback's last lines for a defect)."""
    from medattn.errors import MedattnError

    try:
        return target.read(path), ""
    except MedattnError as error:
        named = path.name in str(error) or path.parent.name in str(error)
        return ("refused", "") if named else ("unnamed", str(error))
    except Exception as error:  # the defect this module exists to find: record its type and where it came from
        return f"untyped:{type(error).__name__}", traceback.format_exc(limit=-3)


def _worker(connection, targets_factory: Callable[[Path], dict[str, Target]], workdir: str) -> None:
    import warnings

    warnings.simplefilter("ignore")  # pydicom warns about every odd byte; the outcome is what counts
    try:
        targets = targets_factory(Path(workdir))
    except Exception:  # the seeds could not be made: the parent stops with this traceback
        connection.send(("setup failed", traceback.format_exc(), ""))
        return
    connection.send(("ready", "", ""))
    while (job := connection.recv()) is not None:
        name, seed_index, mutant_seed = job
        target = targets[name]
        source = target.seeds[seed_index]
        damage, data = mutate(source.read_bytes(), source.name.lower(), random.Random(mutant_seed))
        outcome, detail = outcome_of(target, target.place(data, source))
        connection.send((damage, outcome, detail))


class _Worker:
    """A child process that reads mutants; replaced after a hang or a crash."""

    def __init__(self, targets_factory: Callable, workdir: str) -> None:
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no torch threads, no inherited state
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, targets_factory, workdir), daemon=True)
        self.process.start()
        child.close()  # so a child that dies makes recv() fail instead of wait for ever
        try:
            status, detail, _ = self.connection.recv()
        except EOFError:
            status, detail = "died", f"exit code {self.process.join() or self.process.exitcode}"
        if status != "ready":
            raise RuntimeError(f"the fuzz worker could not make its seed files:\n{detail}")

    def read(self, job: tuple, time_limit: float) -> tuple[str, str, str]:
        self.connection.send(job)
        try:
            if self.connection.poll(time_limit):
                return self.connection.recv()
        except EOFError:  # the child died: a segfault or an abort inside a decoder
            return "?", f"crash:exit {self.process.exitcode}", ""
        return "?", "hang", ""

    def close(self, *, kill: bool = False) -> None:
        if not kill:
            self.connection.send(None)
            self.process.join(5)
        self.process.kill()
        self.process.join()


def run_mutants(
    targets_factory: Callable[[Path], dict[str, Target]],
    jobs: Iterable[tuple[str, int, int]],
    *,
    time_limit: float,
    on_result: Callable[[tuple, str, str, str], None] | None = None,
) -> Counter:
    """Read each (target, seed index, mutant seed) job in a child process; a read over `time_limit` seconds
    counts as `hang`, a child that dies as `crash`, and the child is replaced. Returns counts of (target, outcome)."""
    counts: Counter = Counter()
    workdir = tempfile.mkdtemp(prefix="medattn-fuzz-")
    worker = None
    try:
        for job in jobs:
            worker = worker or _Worker(targets_factory, workdir)
            damage, outcome, detail = worker.read(job, time_limit)
            if outcome == "hang" or outcome.startswith("crash"):
                worker.close(kill=True)
                worker = None
            counts[job[0], outcome] += 1
            if on_result is not None:
                on_result(job, damage, outcome, detail)
    finally:
        if worker is not None:
            worker.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return counts


def plan(seed_counts: dict[str, int], per_target: int, seed: int) -> list[tuple[str, int, int]]:
    """`per_target` jobs per target (name -> how many seed files it has), spread over its seed files, each with
    its own reproducible mutant seed."""
    rng = random.Random(seed)
    return [
        (name, index % count, rng.getrandbits(48)) for name, count in seed_counts.items() for index in range(per_target)
    ]
