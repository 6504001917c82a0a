"""`leannet demo`: train, prune, export and report on the bundled digits; print what happened."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `demo` command."""

    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing output folder."),
        epochs: int = typer.Option(10, "--epochs", help="Training epochs."),
        prune: bool = typer.Option(True, "--prune/--no-prune", help="Prune, export and report."),
        runtime: str = typer.Option("torch,onnxruntime", "--runtime",
                                    help="Runtimes for the int8 step (add executorch: ~1 min)."),
        deploy: bool = typer.Option(True, "--deploy/--no-deploy", help="The int8 on-device step."),
    ) -> None:
        """Train MobileNetV2 on scikit-learn's digits, prune it to half its MACs, export, report."""
        from leannet.cli.prune import print_attempt
        from leannet.jobs.demo import DemoConfig, run_demo
        from leannet.jobs.deploy import parse_list
        from leannet.deploy.runtimes import list_runtimes
        from leannet.errors import LeannetError

        if epochs < 1:
            raise LeannetError(f"--epochs must be at least 1, got {epochs}")
        runtimes = parse_list(runtime, "runtime", list_runtimes())
        stages = iter(range(1, 2 + 2 * prune + deploy))

        def on_stage(text: str) -> None:
            console.rule(f"[bold]{next(stages, '')} {text}")

        config = DemoConfig(epochs=epochs, prune=prune, deploy=deploy, deploy_runtimes=runtimes)
        result = run_demo(out, force=force, config=config, on_stage=on_stage,
                          on_attempt=print_attempt)
        console.print(summary_table(result))
        console.print(f"result: {out / 'result.json'}"
                      + (f"   report: {result['report']}" if "report" in result else ""))


def summary_table(result: dict) -> Table:
    """Trained and (when pruned) final numbers side by side."""
    table = Table(title=f"leannet demo: {result['model']} on {result['data']}")
    pruned = "final" in result
    for column in ("", "trained", *(["pruned"] if pruned else [])):
        table.add_column(column, justify="right")
    final = result.get("final", {})
    rows = [("validation accuracy", f"{result['accuracy']:.2%}",
             f"{final.get('metric', 0):.2%}"),
            ("parameters", f"{result['params']:,}", f"{final.get('params', 0):,}"),
            ("MACs", f"{result['macs'] / 1e6:,.2f}M", f"{final.get('macs', 0) / 1e6:,.2f}M"),
            ("weights file", f"{(result.get('size_bytes') or 0) / 1024:,.1f} KiB",
             f"{(final.get('size_bytes') or 0) / 1024:,.1f} KiB"),
            ]
    for what, trained, after in rows:
        table.add_row(what, trained, *([after] if pruned else []))
    if pruned:
        onnx = result["onnx"]
        table.add_row("ONNX parity (max abs diff)", "", f"{onnx['max_abs_diff']:.2e}")
        table.add_row("target reached", "", str(result["target_reached"]))
    for what, trained, after in deploy_rows(result.get("deploy")):
        table.add_row(what, trained, *([after] if pruned else []))
    table.add_row("total time", "", f"{result['seconds']:.1f} s")
    return table


def deploy_rows(deploy: dict | None) -> list[tuple[str, str, str]]:
    """Per runtime: trained fp32 against the final model's fp32 and int8, each latency with its
    IQR and conditions (1 thread, batch 1), accuracy, and the speed-up of final int8."""
    if not deploy:
        return []
    from leannet.measure import latency_from_dict

    rows = []
    for name, final in deploy["final"].items():
        runtime, precision = name.split("/")
        trained = deploy["trained"].get(runtime) if precision == "fp32" else None
        latency = latency_from_dict(final["latency"])
        label = f"{latency.conditions()}: latency ms (IQR)"
        rows.append((label, latency_from_dict(trained["latency"]).short() if trained else "",
                     latency.short()))
        if final.get("accuracy") is not None:
            rows.append((f"{runtime} {precision}: accuracy",
                         f"{trained['accuracy']:.2%}" if trained else "",
                         f"{final['accuracy']:.2%}"))
        if precision == "int8":
            rows.append((f"{runtime} int8 vs trained fp32: speed-up", "",
                         f"{deploy['speedup_vs_trained_fp32'][name]:.2f}x"))
    rows += [(f"{s['runtime']} {s['precision']}", "", f"skipped: {s['skipped']}")
             for s in deploy.get("skipped", [])]
    return rows
