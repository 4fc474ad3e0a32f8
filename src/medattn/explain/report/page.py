"""The report page: sections of HTML in one file, styled so that nothing overflows a narrow window."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
img { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: .5rem 0; max-width: 100%; }
td, th { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; overflow-wrap: anywhere; }
.grid { display: flex; flex-wrap: wrap; gap: .75rem; }
.grid figure { margin: 0; width: 260px; max-width: 100%; }
figcaption { font-size: .8rem; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .8rem; }
"""


@dataclass
class Section:
    title: str
    body: str  # HTML


def table(rows: list[tuple[str, str]], header: tuple[str, ...] = ()) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def figure(image_html: str, caption: str) -> str:
    return f"<figure>{image_html}<figcaption>{html.escape(caption)}</figcaption></figure>"


def card_section(card: dict) -> Section:
    model, given = card["model"], card.get("input", {})
    rows = [
        ("task", card.get("task", "")),
        ("model", f"{model['name']} ({model['spatial_dims']}D, {model['in_channels']} channel(s))"),
        ("options", json.dumps(model.get("options", {}))),
        ("outputs", ", ".join(card.get("class_names") or card.get("target_names") or [])),
        ("input", f"size {given.get('size')}, {given.get('inference', '')}"),
        ("intensity", json.dumps(given.get("intensity", {}))),
        ("training data", json.dumps(card.get("training_data", {}).get("splits", {}))),
        ("created", card.get("created", "")),
    ]
    return Section("Model card", table(rows))


def page(title: str, sections: list[Section]) -> str:
    parts = [f"<h2>{html.escape(s.title)}</h2>\n{s.body}" for s in sections]
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
