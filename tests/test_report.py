"""`medattn report`: one self-contained HTML file written at the end of evaluate, rendered in headless Chromium
(every image loaded, nothing overflowing the window); for segmentation and regression too."""

import base64
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from explain_data import blob_csv, cli_json, train_tiny  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = blob_csv(root / "data", n=100)
    run = train_tiny(data, root / "run", epochs=4)
    metrics = cli_json("evaluate", run)
    return run, metrics


def test_evaluate_writes_a_self_contained_report(reported):
    run, metrics = reported
    page = Path(metrics["report"]).read_text()
    assert Path(metrics["report"]) == run / "report.html"
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 6  # curves, ROC/PR/calibration, confusion matrix, the gallery
    assert all(s.startswith("data:image/png;base64,") for s in sources)  # nothing outside the file
    assert all(base64.b64decode(s.split(",", 1)[1])[:4] == b"\x89PNG" for s in sources)
    for heading in ("Model card", "Training curves", "Evaluation: test split", "confusion matrix", "Gallery"):
        assert heading in page
    assert "<h3>correct</h3>" in page


def test_the_report_renders_in_chromium(reported, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not at {CHROMIUM} (apt-get install chromium)")
    run, _ = reported
    shot = tmp_path / "report.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 900, "height": 1200})
        page.goto((run / "report.html").as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
        overflow = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
            " [...document.querySelectorAll('img, table, figure')].filter("
            "e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).length]"
        )
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert images
    assert all(done and width > 0 for done, width in images), images
    scroll_width, client_width, sticking_out = overflow
    assert scroll_width <= client_width, overflow
    assert sticking_out == 0, overflow
    assert shot.stat().st_size > 20_000


def test_segmentation_and_regression_reports(tmp_path):
    from medattn.explain.report.build import write_report
    from medattn.tasks.regress.phantom import save_burden_npz

    data = save_burden_npz(tmp_path / "burden.npz", n_train=48, n_val=16, n_test=8, size=16, seed=2)
    page = write_report(train_tiny(data, tmp_path / "reg", epochs=1)).read_text()
    assert "predicted against true" in page
    assert "<h3>cases</h3>" in page
