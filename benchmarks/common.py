"""What every benchmark script does at the end: results/<name>.json, results/<name>.md, the table on stdout."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(out: str | Path, payload, table: str) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print(table)
