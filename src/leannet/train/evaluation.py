"""Evaluate a saved model folder on a data source: the library side of `leannet eval`, and the
held-out (test) numbers that `train` and `prune` report beside the validation ones they select on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from leannet.errors import LeannetError
from leannet.models import model_config
from leannet.files import check_result_file
from leannet.data.loaders import split_loader
from leannet.files import atomic_write_json
from leannet.checkpoint import load, read_config
from leannet.train.build import check_fits, source_for_model
from leannet.train.fit import evaluate


EVAL_SPLITS = ("test", "val")


def split_facts(source: Any, selected_on: str = "val", reported_on: str = "test"
                ) -> dict[str, Any]:
    """Which split chose (best epoch, guard, calibration) and which reports, and where each
    split of `source` came from, for result.json."""
    has_test = getattr(source, "test", None) is not None
    sizes = {name: len(getattr(source, name)) for name in ("train", "val", "test")
             if getattr(source, name, None) is not None}
    return {"selection": selected_on, "report": reported_on if has_test else None,
            "sources": dict(getattr(source, "splits", {}) or {}), "sizes": sizes,
            **({} if has_test else {"note": f"{source.name} has no test split: nothing here is "
                                            "a held-out number"})}


def test_metrics(model: Any, source: Any, task: Any, batch_size: int = 256,
                 device: Any = None) -> dict[str, float] | None:
    """`model`'s metrics on the source's test split (None when it has none)."""
    if getattr(source, "test", None) is None:
        return None
    return evaluate(model, split_loader(source, "test", batch_size), task, device)


def evaluate_folder(model_dir: str | Path, data: str | None = None,
                    data_root: str | Path | None = None, batch_size: int = 256,
                    out: str | Path | None = None, force: bool = False,
                    split: str = "test") -> dict[str, Any]:
    """Load `model_dir`, evaluate it on one split (`test` by default, `val`) of `data` (default:
    its training source), return the result.

    With `out`, the result is also written to `out/result.json` (refused if present, unless
    `force`); nothing is written inside the model folder.
    """

    if batch_size < 1:
        raise LeannetError(f"--batch-size must be at least 1, got {batch_size}")
    if split not in EVAL_SPLITS:
        raise LeannetError(f"--split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    result_path = Path(out) / "result.json" if out is not None else None
    if result_path is not None:
        check_result_file(result_path, "eval", force)
    model = load(model_dir)
    recorded = read_config(model_dir).get("data")  # the training source, if `train` recorded it
    if recorded and "data" not in model_config(model):
        model_config(model)["data"] = recorded
    where = f"the model in {model_dir}"
    source, task = source_for_model(model, data, data_root, where=where)
    loader = split_loader(source, split, max(1, batch_size // 2))
    if source.task == "classify":
        check_fits(model, next(iter(loader))[0][:2], source, where)
    metrics = evaluate(model, loader, task)
    samples = len(source.split(split))  # type: ignore[arg-type]
    result = {"command": "eval", "model_dir": str(model_dir), "data": source.name,
              "split": split, "split_source": source.splits.get(split),
              "samples": samples, "main_metric": task.main_metric,
              task.main_metric: metrics.get(task.main_metric), "metrics": metrics}
    if result_path is not None:
        atomic_write_json(result_path, result)
    return result
