"""The deployment commands (`export`, `serve`, `compress`), registered on the one Typer app in cli.py.

Heavy libraries load inside each command, as in cli.py, so `medattn --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from medattn.cli_common import emit as _emit


def _print_export(record: dict) -> None:
    parity = record["parity"]
    print(
        f"{record['run']}/{record['file']}: {record['size_mb']} MB, dynamic {', '.join(record['dynamic_axes'])}; "
        f"max |ONNX - PyTorch| = {parity['max_abs_diff']:.3g} on {parity['inputs']} {parity['split']} inputs "
        f"(tolerance {parity['tolerance']})"
    )
    if "int8" in record:
        int8 = record["int8"]
        print(
            f"{record['run']}/{int8['file']}: {int8['size_mb']} MB; max |INT8 - PyTorch| = {int8['max_abs_diff']:.3g}, "
            f"arg-max agreement {int8['argmax_agreement']:.3f} "
            f"(calibrated on {int8['calibration']['inputs']} training inputs)"
        )


def export(
    run: Path = typer.Argument(..., help="a finished run directory"),
    format: str = typer.Option("onnx", "--format", help="onnx"),
    quantize: str = typer.Option(None, "--quantize", help="int8: also RUN/model.int8.onnx (static, QDQ)"),
    tolerance: float = typer.Option(1e-3, "--tolerance", help="largest |ONNX - PyTorch| output difference allowed"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Export a run's network to RUN/model.onnx, checked against PyTorch on real images (RUN/export.json)."""
    from medattn.errors import ConfigError
    from medattn.export.to_onnx import export_onnx

    if format != "onnx":
        raise ConfigError(f"--format {format!r}: the one export format is onnx")
    _emit(export_onnx(run, quantize=quantize, tolerance=tolerance), as_json, _print_export)


def serve(
    run: Path = typer.Argument(..., help="a finished run directory"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (127.0.0.1: this machine only)"),
    port: int = typer.Option(8000, "--port"),
    token: str = typer.Option(
        None, "--token", help="require `Authorization: Bearer TOKEN` on every call but / and /health"
    ),
    backend: str = typer.Option("torch", "--backend", help="torch | onnx | onnx-int8"),
    max_mb: float = typer.Option(32.0, "--max-mb", help="largest upload accepted (larger: 413)"),
) -> None:
    """Serve a run over HTTP: POST /predict and /explain (multipart `file`), GET /model, /health, a web page at /."""
    import uvicorn

    from medattn.serve.app import create_app

    app = create_app(run, token=token, backend=backend, max_bytes=int(max_mb * 1024 * 1024))
    uvicorn.run(app, host=host, port=port, log_level="info")


def _print_compress(result: dict) -> None:
    record = result["compress"]
    parameters = record["parameters"]
    done = ", ".join(k for k in ("prune", "distill") if k in record)
    print(
        f"{result['run']}: {done} of {record['from']}; {parameters['after']:,} parameters "
        f"({parameters['ratio']:.2f} of {parameters['before']:,}); {record['epochs']} epochs, "
        f"best epoch {result['best_epoch']}: {result['val']}"
    )


def compress(
    run: Path = typer.Argument(..., help="a finished run directory"),
    out: Path = typer.Option(..., "--out", help="run directory to create for the smaller model"),
    prune: float = typer.Option(
        None, "--prune", help="share of the inner channels of every residual / U-Net block to remove (0-1)"
    ),
    distill: bool = typer.Option(False, "--distill", help="train a student with RUN as its teacher"),
    student: str = typer.Option(None, "--student", help="--distill: the student's registered model name"),
    student_options: str = typer.Option(
        None, "--student-options", help="--distill: the student's options as JSON, e.g. '{\"widths\": [8, 16, 32]}'"
    ),
    epochs: int = typer.Option(None, "--epochs", help="fine-tuning epochs (pruning: 3; a student: the run's own)"),
    lr: float = typer.Option(None, "--lr", help="learning rate (pruning: a tenth of the run's; a student: the run's)"),
    temperature: float = typer.Option(None, "--temperature", help="--distill: softening temperature T (4)"),
    alpha: float = typer.Option(None, "--alpha", help="--distill: the teacher's share of the loss (0.5)"),
    force: bool = typer.Option(False, "--force", help="replace an existing run directory"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Make a smaller run from RUN on its own data: structured pruning with fine-tuning, and/or distillation."""
    from medattn.export.compress import compress_run

    try:
        result = compress_run(
            run,
            out,
            prune=prune,
            distill=distill,
            student=student,
            student_options=student_options,
            epochs=epochs,
            lr=lr,
            temperature=temperature,
            alpha=alpha,
            force=force,
        )
    except BaseException:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # failed before writing anything: leave no empty run behind
        raise
    _emit(result, as_json, _print_compress)
