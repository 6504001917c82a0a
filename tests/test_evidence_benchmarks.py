"""The evidence benchmarks' bookkeeping: which rows a pruning run makes, how seeds are joined,
and that the MultiMNIST sharing benchmark selects on validation and reports on test."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pytest

from tests.helpers import shared_data

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(BENCHMARKS / "evidence"))
import multitask_sharing  # noqa: E402
import prune_vs_torch_pruning as pvt  # noqa: E402
import sharing  # noqa: E402

sys.path.remove(str(BENCHMARKS))
sys.path.remove(str(BENCHMARKS / "evidence"))


def _args(**kw) -> argparse.Namespace:
    base = {"methods": [], "steps": 2, "iterative": "pairs", "schedules": ["oneshot", "iterative"]}
    return argparse.Namespace(**{**base, **kw})


def test_pruning_rows_follow_methods_and_schedules():
    everything = pvt.methods(_args())
    assert ("group_l1", 1) in everything and ("fpgm", 1) in everything
    assert ("tp-taylor", 2) in everything and ("fpgm", 2) not in everything  # pairs only
    assert ("fpgm", 2) in pvt.methods(_args(iterative="all"))
    # the rows an earlier run left out: the iterative pairs alone, nothing one-shot
    missing = pvt.methods(_args(methods=["tp-group_l1", "group_l1", "taylor"],
                                schedules=["iterative"]))
    assert missing == [("tp-group_l1", 2), ("group_l1", 2), ("taylor", 2)]
    assert pvt.methods(_args(methods=["l1"], schedules=["iterative"])) == []  # l1 is no pair
    assert pvt.methods(_args(steps=1)) == [(m, 1) for m in
                                            [x for p in pvt.PAIRS for x in p] + pvt.OWN]


def test_seeds_join_once_per_method_and_seed_with_sample_std():
    def row(method, seed, acc):
        return {"model": "resnet20", "method": method, "steps": 1, "seed": seed, "test_acc": acc,
                "val_acc": acc, "macs_fraction": 0.5, "params": 10, "wall_s": 1.0}

    rows = [row("l1", 0, 0.2), row("l1", 1, 0.3), row("l1", 2, 0.4),
            row("l1", 0, 0.9),  # the same (method, seed) from a second part: the first counts
            row("fpgm", 0, 0.25)]
    summary = {s["method"]: s for s in pvt.summarise(rows)}
    assert summary["l1"]["seeds"] == [0, 1, 2]
    assert summary["l1"]["test_acc"] == pytest.approx(0.3)
    assert summary["l1"]["test_acc_std"] == pytest.approx(0.1)  # sample std, n - 1
    assert math.isnan(summary["fpgm"]["test_acc_std"])  # one seed: no spread, said as such
    assert pvt._finite(summary["fpgm"])["test_acc_std"] is None
    assert pvt.label("tp-group_l1", 2) == "Torch-Pruning group_l1 iterative x2"
    mixed = [{**row("group_l1", 0, 0.2), "steps": 2}, row("fpgm", 0, 0.2), row("group_l1", 0, 0.2),
             {**row("baseline", 0, 0.3), "steps": 0}, row("tp-group_l1", 0, 0.2)]
    order = [(s["method"], s["steps"]) for s in pvt.summarise(mixed)]
    assert order == [("baseline", 0), ("tp-group_l1", 1), ("group_l1", 1), ("fpgm", 1),
                     ("group_l1", 2)]


def test_merge_tables_an_earlier_schedule_apart_from_the_headline(tmp_path, monkeypatch):
    def part(name, command, accs, model="resnet20"):
        rows = [{"model": model, "method": "group_l1", "steps": 1, "seed": seed,
                 "test_acc": acc, "val_acc": acc, "val_acc_before_ft": None,
                 "macs_fraction": 0.5, "params": 10, "wall_s": 1.0}
                for seed, acc in enumerate(accs)]
        path = tmp_path / name
        path.write_text(json.dumps({"command": command, "splits": {"train": command},
                                    "rows": rows}))
        return path

    monkeypatch.setattr(pvt, "OUT", tmp_path / "out" / "table")
    pvt.merge([part("new.json", "strong", [0.5, 0.6, 0.7]),
               part("deep.json", "small", [0.4], model="resnet56")],
              [part("old.json", "weak", [0.1, 0.2, 0.3])])
    result = json.loads((tmp_path / "out" / "table.json").read_text())
    assert result["summary"][0]["test_acc"] == pytest.approx(0.6)  # the old rows are not mixed in
    assert result["earlier"]["summary"][0]["test_acc"] == pytest.approx(0.2)
    assert result["summary"][0]["val_acc_before_ft"] is None  # strict JSON: NaN as null
    text = (tmp_path / "out" / "table.md").read_text()
    headline, earlier = text.split("## Earlier, weaker schedule")
    assert "`strong`" in headline and "60.00 ± 10.00" in headline and "weak" not in headline
    assert "`weak`" in earlier and "20.00 ± 10.00" in earlier
    # two models on different subsets: each model's splits, not the last part's for both
    assert "- resnet20 train: strong" in headline and "- resnet56 train: small" in headline
    assert "- train: weak" in earlier


def test_soft_sharing_caption_states_its_own_budget():
    settings = {"train": 2000, "val": 500, "test": 1000, "epochs": 3, "batch_size": 64,
                "seeds": [0, 1, 2], "grid": True}
    text = sharing._table("soft", [["independent", "1", "2", "3", "4", "5"]], settings)
    assert "2000 train / 500 val / 1000 test pairs, 3 epochs, batch 64, seeds [0, 1, 2]" in text
    assert "chosen on validation" in text
    assert "λ" not in sharing._table("hard", [], {**settings, "grid": False})


@pytest.mark.skipif(not (shared_data() / "mnist").is_dir(), reason="needs ../shared/data/mnist")
def test_multitask_sharing_selects_on_validation_and_reports_on_test():
    args = argparse.Namespace(root=str(shared_data() / "mnist"), train_size=300, val_size=100,
                              seed=0)
    source, (train_set, val_loader), train_eval, test = multitask_sharing.data(args)
    assert len(train_set) == 300 and len(val_loader.dataset) == 100
    assert val_loader.dataset is source.val  # best epoch and pruning guard: validation
    assert test.dataset is source.test and len(test.dataset) == 10000  # MNIST's test images
    assert train_eval.dataset is source.train
    assert "test" in source.splits["test"] and "train" in source.splits["val"]
