"""Hard sharing and overfitting (train-test gap vs number of tasks, 1 to 4), and soft sharing
with an L2 or trace-norm penalty vs independent models, on leannet's `multi-mnist` source.

The seed repeats Baxter's claim that with hard sharing the risk of overfitting the shared
parameters is an order N smaller, N the number of tasks. MultiMNIST pairs carry two digits, so four
related tasks come from them: `left`, `right`, `sum` (left + right, 19 classes) and `diff`
(|left - right|, 10 classes). `hard_sharing` with N = 1..4 heads on one `simple_cnn` trunk is
trained on a small carved training set (so that it can overfit); the table gives the `left`
task's train-test gap (the task every N shares) and the mean over the tasks.

Soft sharing: `soft_sharing` columns for `left` and `right` with the L2 or trace-norm penalty;
strength 0 is two independent models trained side by side. Both penalties use strength 0.01
(benchmarks/multitask_sharing.py's value, not tuned on this data, so nothing is selected on test);
`--grid` chooses each strength on validation (first seed) from GRID instead. Every row runs 3 seeds.

    nice -n 10 python benchmarks/evidence/sharing.py                # both parts, about 5 CPU-minutes
    nice -n 10 python benchmarks/evidence/sharing.py --part hard    # or side by side: hard,
    nice -n 10 python benchmarks/evidence/sharing.py --part soft --only l2 trace        # soft,
    nice -n 10 python benchmarks/evidence/sharing.py --part soft --only independent hard
    python benchmarks/evidence/sharing.py --merge                   # then the table and figure
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import (OUT, Splits, figure_path, load_splits, machine, markdown, mean_std, pm,  # noqa: E402
                    separated, train_select_test, write)
from leannet.measure import count_macs, count_params  # noqa: E402
from leannet.models import create_model  # noqa: E402
from leannet.multitask import MultiTask  # noqa: E402

TASKS = {"left": 10, "right": 10, "sum": 19, "diff": 10}
TRUNK = {"channels": [16, 32], "hidden": 64}
HEAD_HIDDEN = 32
BATCH = {"size": 128}  # --batch-size sets it
GRID = [1e-3, 1e-2, 1e-1]  # --grid: choose the strength on validation (seed 0) from these


def with_tasks(labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """left and right from the source, sum and diff derived from them."""
    left, right = labels["left"], labels["right"]
    return {"left": left, "right": right, "sum": left + right, "diff": (left - right).abs()}


def splits_for(args: argparse.Namespace, seed: int) -> Splits:
    s = load_splits("multi-mnist", args.train, args.val, args.test, seed=seed)
    s.train, s.val, s.test = [(x, with_tasks(y)) for x, y in (s.train, s.val, s.test)]
    return s


def train(model_name: str, kwargs: dict, splits: Splits, seed: int, epochs: int) -> dict:
    torch.manual_seed(seed)
    model = create_model(model_name, **kwargs)
    task = MultiTask(list(model.task_names))
    scores = train_select_test(model, splits, task, epochs=epochs, seed=seed,
                               batch_size=BATCH["size"])
    scores["params"] = count_params(model)
    scores["macs"] = count_macs(model, (1, 1, 28, 28))
    return scores


def gap(scores: dict, task: str) -> float:
    return scores["train"][f"{task}/accuracy"] - scores["test"][f"{task}/accuracy"]


def hard_part(args: argparse.Namespace) -> tuple[dict, list]:
    rows, table = {}, []
    names = list(TASKS)
    for n in args.ns:
        tasks = {t: TASKS[t] for t in names[:n]}
        runs = []
        for seed in args.seeds:
            runs.append(train("hard_sharing", {"tasks": tasks, "trunk": "simple_cnn",
                                               "trunk_kwargs": TRUNK, "head_hidden": HEAD_HIDDEN},
                              splits_for(args, seed), seed, args.epochs))
            print(f"hard N={n} seed {seed}: left test {runs[-1]['test']['left/accuracy']:.4f}",
                  flush=True)
        rows[n] = {"tasks": list(tasks), "params": runs[0]["params"], "macs": runs[0]["macs"],
                   "left_test": mean_std([r["test"]["left/accuracy"] for r in runs]),
                   "left_train": mean_std([r["train"]["left/accuracy"] for r in runs]),
                   "left_gap": mean_std([gap(r, "left") for r in runs]),
                   "mean_gap": mean_std([sum(gap(r, t) for t in tasks) / n for r in runs]),
                   "runs": runs}
        r = rows[n]
        table.append([n, ", ".join(tasks), f"{r['params']:,}", pm(r["left_train"]),
                      pm(r["left_test"]), pm(r["left_gap"]), pm(r["mean_gap"])])
    return rows, table


def soft_part(args: argparse.Namespace) -> tuple[dict, list]:
    tasks = {"left": 10, "right": 10}
    soft = {"tasks": tasks, "column": "simple_cnn", "column_kwargs": TRUNK,
            "head_hidden": HEAD_HIDDEN}
    variants: dict[str, tuple[str, dict]] = {
        "independent (two columns, no penalty)": ("soft_sharing", {**soft, "strength": 0.0}),
        "hard sharing (one trunk, two heads)": ("hard_sharing", {
            "tasks": tasks, "trunk": "simple_cnn", "trunk_kwargs": TRUNK, "head_hidden": HEAD_HIDDEN}),
    }
    chosen: dict = {}
    first = splits_for(args, args.seeds[0])
    for penalty in ("l2", "trace"):
        if args.only and not any(o in penalty for o in args.only):
            continue
        scores = ({s: train("soft_sharing", {**soft, "penalty": penalty, "strength": s}, first,
                            args.seeds[0], args.epochs)["val"]["mean_accuracy"] for s in GRID}
                  if args.grid else {args.strength: None})
        best = max(scores, key=lambda s: scores[s] or 0.0)
        chosen[penalty] = {"grid": scores, "strength": best}
        print(f"{penalty}: val by strength {scores} -> {best}", flush=True)
        variants[f"soft sharing, {'L2' if penalty == 'l2' else 'trace norm'} (λ={best:g})"] = (
            "soft_sharing", {**soft, "penalty": penalty, "strength": best})
    rows, table = {}, []
    for name, (model_name, kwargs) in variants.items():
        if args.only and not any(o in name.lower() for o in args.only):
            continue
        runs = [train(model_name, kwargs, splits_for(args, seed), seed, args.epochs)
                for seed in args.seeds]
        print(name, [round(r["test"]["mean_accuracy"], 4) for r in runs], flush=True)
        rows[name] = {"params": runs[0]["params"], "macs": runs[0]["macs"],
                      "test": mean_std([r["test"]["mean_accuracy"] for r in runs]),
                      "val": mean_std([r["val"]["mean_accuracy"] for r in runs]),
                      "gap": mean_std([(gap(r, "left") + gap(r, "right")) / 2 for r in runs]),
                      "runs": runs}
        r = rows[name]
        table.append([name, f"{r['params']:,}", f"{r['macs']:,}", pm(r["val"]), pm(r["test"]),
                      pm(r["gap"])])
    return {"rows": rows, "chosen": chosen}, table


def plot(hard: dict, soft: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6))
    ns = sorted(hard)
    for key, label in (("left_gap", "left task gap"), ("mean_gap", "mean gap over tasks")):
        axes[0].errorbar(ns, [100 * hard[n][key]["mean"] for n in ns],
                         yerr=[100 * hard[n][key]["std"] for n in ns], marker="o", capsize=3,
                         label=label)
    axes[0].set_xticks(ns)
    axes[0].set_xlabel("number of tasks sharing the trunk")
    axes[0].set_ylabel("train - test accuracy (points)")
    axes[0].set_title("hard sharing on MultiMNIST")
    axes[0].legend(fontsize=7)
    names = list(soft["rows"])
    axes[1].barh(range(len(names)), [100 * soft["rows"][n]["test"]["mean"] for n in names],
                 xerr=[100 * soft["rows"][n]["test"]["std"] for n in names])
    axes[1].set_yticks(range(len(names)))
    axes[1].set_yticklabels(names, fontsize=7)
    low = min(100 * soft["rows"][n]["test"]["mean"] for n in names)
    axes[1].set_xlim(low - 3, 100)
    axes[1].set_xlabel("mean test accuracy, left and right %")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["both", "hard", "soft"], default="both",
                        help="one part writes sharing_<part>.json; both (or --merge) sharing.*")
    parser.add_argument("--merge", action="store_true", help="combine sharing_hard and _soft")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 2, 3, 4],
                        help="hard part: numbers of tasks; a subset writes sharing_hard_<ns>.json")
    parser.add_argument("--grid", action="store_true", help="choose λ on validation from GRID")
    parser.add_argument("--strength", type=float, default=1e-2,
                        help="λ of both penalties without --grid (benchmarks/multitask_sharing.py's)")
    parser.add_argument("--only", nargs="+", default=[],
                        help="soft part: rows whose name contains one of these (l2, trace, "
                             "independent, hard); writes sharing_soft_<only>.json")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    BATCH["size"] = args.batch_size
    if args.part in ("hard", "soft") and not args.merge:
        rows, table = (hard_part if args.part == "hard" else soft_part)(args)
        data = {str(k): v for k, v in rows.items()} if args.part == "hard" else rows
        suffix = f"_{'-'.join(args.only)}" if args.only and args.part == "soft" else ""
        if args.part == "hard" and args.ns != [1, 2, 3, 4]:
            suffix = "_" + "-".join(str(n) for n in args.ns)
        write(f"sharing_{args.part}{suffix}", {"machine": machine(), "settings": vars(args), "rows": data,
                                       "table": table}, _table(args.part, table))
        return
    if args.merge:
        hard_parts = [json.loads(p.read_text()) for p in sorted(OUT.glob("sharing_hard*.json"))]
        hard_json = {"rows": {k: v for part in hard_parts for k, v in part["rows"].items()},
                     "table": sorted((r for part in hard_parts for r in part["table"]),
                                     key=lambda r: r[0]),
                     "settings": hard_parts[0]["settings"]}
        soft = {"rows": {}, "chosen": {}}
        soft_table = []
        for path in sorted(OUT.glob("sharing_soft*.json")):
            part = json.loads(path.read_text())
            soft["rows"].update(part["rows"]["rows"])
            soft["chosen"].update(part["rows"]["chosen"])
            soft["settings"] = part["settings"]
            soft_table += part["table"]
        hard = {int(k): v for k, v in hard_json["rows"].items()}
        hard_table = hard_json["table"]
        settings = hard_json["settings"]
    else:
        hard, hard_table = hard_part(args)
        soft, soft_table = soft_part(args)
        settings = vars(args)
        soft["settings"] = settings
    ns = sorted(hard)
    first, last = hard[ns[0]]["left_gap"], hard[ns[-1]]["left_gap"]
    verdicts = [
        f"left-task gap with {ns[0]} task(s) {pm(first)} vs {ns[-1]} tasks {pm(last)}: "
        + ("a difference beyond the spread" if separated(first, last) else "inside the spread"),
    ]
    independent = soft["rows"]["independent (two columns, no penalty)"]["test"]
    for name, r in soft["rows"].items():
        if name.startswith(("soft", "hard")):
            verdicts.append(f"{name}: {pm(r['test'])} vs independent {pm(independent)}: "
                            + ("beyond the spread" if separated(r["test"], independent)
                               else "inside the spread"))
    table = ("MultiMNIST (`multi-mnist`), validation pairs carved from the training pairs, test "
             "pairs from MNIST's test images; AdamW 2e-3 cosine; trunk simple_cnn(16, 32) + "
             "64-unit layer, heads 32 -> classes; accuracy %, mean ± std over seeds.\n\n"
             + _table("hard", hard_table, settings) + "\n\n"
             + _table("soft", soft_table, soft["settings"])
             + "\n\n" + "\n".join(f"- {v}" for v in verdicts))
    plot(hard, soft, figure_path("sharing"))
    write("sharing", {"machine": machine(), "settings": settings, "tasks": TASKS, "trunk": TRUNK,
                      "head_hidden": HEAD_HIDDEN, "hard": {str(k): v for k, v in hard.items()},
                      "soft": soft, "verdicts": verdicts}, table)


def _headers(part: str) -> tuple[list[str]]:
    if part == "hard":
        return (["N", "tasks", "params", "left train acc", "left test acc", "left gap", "mean gap"],)
    return (["model", "params", "MACs", "val acc (mean of tasks)", "test acc", "gap"],)


def _table(part: str, rows: list, settings: dict | None = None) -> str:
    title = ("Hard sharing, N tasks" if part == "hard"
             else "Soft sharing (tasks left and right; accuracy and gap: mean of the two tasks)")
    if settings:
        strength = ("λ chosen on validation (seed 0) from " + str(GRID) if settings.get("grid")
                    else f"λ = {settings.get('strength', 0.01):g} for both penalties")
        title += (f", {settings['train']} train / {settings['val']} val / {settings['test']} "
                  f"test pairs, {settings['epochs']} epochs, batch {settings.get('batch_size', 128)}, "
                  f"seeds {settings['seeds']}" + ("" if part == "hard" else f"; {strength}"))
    return title + ":\n\n" + markdown(*_headers(part), rows)


if __name__ == "__main__":
    main()
