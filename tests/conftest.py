"""Shared test fixtures.

Real data lives in ../shared/data beside the project root (see its README.md and each SOURCE.md).
Tests that need it take the `shared_data` fixture and skip with the reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each keeps to one thread, or two workers' thread pools on the same
    # cores slow each other about tenfold. Set before torch is imported, and inherited by the commands tests run.
    os.environ["OMP_NUM_THREADS"] = "1"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The staged real data folder, or a skip naming where it was looked for."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (see DESIGN.md, 'Data')")
    return SHARED_DATA
