"""data.yaml's `labels_csv:` on a YOLO folder the test writes from real digits-detect canvases:
the CSV's image-level labels reach a classify and a multi-label head next to the boxes (the
multi-label one must equal the labels derived from the boxes, which is what the CSV was written
from), a multi-head model trains on them for an epoch, and each bad row or path is one line."""
import csv
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from leannet.data import get_source
from leannet.data.multihead import multi_target_collate, multihead_view
from leannet.errors import LeannetError
from leannet.data.images import write_image
from leannet.multitask.multihead import build
from leannet.train.fit import evaluate, fit

SPLITS = {"train": 16, "val": 6, "test": 6}


def _write_folder(root: Path, spec: str, rows=None) -> dict[str, dict[str, list[int]]]:
    """Canvases as PNGs with YOLO labels; labels.csv (parity of the digit count; the digits
    present, ';'-joined) unless `rows` replaces it. Returns {split: {name: digits}}."""
    canvases = get_source("digits-detect", image_size=64, num_train=SPLITS["train"],
                          num_val=SPLITS["val"], num_test=SPLITS["test"], augment=False)
    truth: dict[str, dict[str, list[int]]] = {}
    table = [["image", "label", "label"]]  # columns: parity, digits
    for split, count in SPLITS.items():
        images, labels = root / "images" / split, root / "labels" / split
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        data = getattr(canvases, split)
        truth[split] = {}
        for i in range(count):
            image, target = data.render(i)
            name = f"{split}_{i:02d}.png"
            write_image(images / name, image.expand(3, -1, -1).contiguous())
            lines = []
            for (x0, y0, x1, y1), label in zip(target["boxes"].tolist(), target["labels"].tolist()):
                lines.append(f"{label} {(x0 + x1) / 128:.6f} {(y0 + y1) / 128:.6f} "
                             f"{(x1 - x0) / 64:.6f} {(y1 - y0) / 64:.6f}")
            (labels / name).with_suffix(".txt").write_text("\n".join(lines) + "\n")
            digits = sorted(set(target["labels"].tolist()))
            truth[split][name] = digits
            parity = "even" if len(target["labels"]) % 2 == 0 else "odd"
            # train rows by file name, the others by path relative to the folder
            key = name if split == "train" else f"images/{split}/{name}"
            table.append([key, parity, ";".join(str(d) for d in digits)])
    column = 1 if "classify" in spec or "parity" in spec else 2
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows if rows is not None else
                                     [[r[0], r[column]] for r in table])
    names = "\n".join(f"  {d}: '{d}'" for d in range(10))
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n"
                                    f"test: images/test\nnames:\n{names}\n{spec}\n")
    return truth


def _labels(dataset, task):
    return [dataset[i][1][task] for i in range(len(dataset))]


def test_csv_labels_reach_classify_and_multilabel_heads(tmp_path):
    parity = tmp_path / "parity"
    parity.mkdir()
    truth = _write_folder(parity, "labels_csv:\n  file: labels.csv\n  task: parity\n"
                                  "  names: [odd, even]")
    source = multihead_view(get_source(f"yolo:{parity}", image_size=64, augment=True),
                            "detect,parity")
    assert source.extra["tasks"]["parity"] == {"kind": "classify", "labels": "csv", "classes": 2,
                                               "class_names": ["odd", "even"]}
    seen: set[int] = set()
    for split in ("train", "val", "test"):
        data = getattr(source, split)
        got = [int(t) for t in _labels(data, "parity")]
        expected = [1 if len(truth_boxes) % 2 == 0 else 0 for truth_boxes in
                    (data.base.rows[i] for i in range(len(data)))]  # names: [odd, even]
        assert got == expected  # augmentation moves boxes, never the image-level label
        assert {p.name for p in data.base.images} <= set(truth[split])
        seen.update(got)
    assert seen == {0, 1}  # both classes occur

    tags = tmp_path / "tags"
    tags.mkdir()
    _write_folder(tags, "labels_csv: {file: labels.csv, kind: multilabel}")
    source = multihead_view(get_source(f"yolo:{tags}", image_size=64), "detect,labels,tags")
    spec = source.extra["tasks"]["tags"]
    assert spec["kind"] == "multilabel" and spec["class_names"] == [str(d) for d in range(10)]
    for split in ("val", "test"):
        data = getattr(source, split)
        from_csv, from_boxes = _labels(data, "tags"), _labels(data, "labels")
        assert all(torch.equal(a, b) for a, b in zip(from_csv, from_boxes))
        assert sum(float(t.sum()) for t in from_csv) > len(from_csv)  # several digits per image


def test_a_multi_head_model_trains_on_csv_tasks(tmp_path):
    _write_folder(tmp_path, "labels_csv: {file: labels.csv, task: parity}")
    source = multihead_view(get_source(f"yolo:{tmp_path}", image_size=64), "detect,parity")
    torch.manual_seed(0)
    model, task = build(source, "mobilenet_v2", {"width_mult": 0.25})
    loader = DataLoader(source.train, batch_size=8, collate_fn=multi_target_collate)
    val = DataLoader(source.val, batch_size=8, collate_fn=multi_target_collate)
    history = fit(model, loader, val, task, 1, optimizer="adamw", lr=3e-3, progress=False)
    assert torch.isfinite(torch.tensor(history[-1]["loss"]))
    metrics = evaluate(model, val, task, "cpu")
    assert 0.0 <= metrics["parity/accuracy"] <= 1.0 and "detect/map50" in metrics
    assert model(torch.rand(2, 3, 64, 64))["parity"].shape == (2, 2)


@pytest.mark.parametrize("spec, rows, message", [
    ("labels_csv: labels.csv", [["file", "label"], ["train_00.png", "odd"]], "header row"),
    ("labels_csv: labels.csv", [["image", "label"], ["train_00.png", "odd", "x"]],
     r"labels.csv:2: expected 2 fields"),
    ("labels_csv: {file: labels.csv, names: [odd, even]}",
     [["image", "label"], ["train_00.png", "three"]], r"labels.csv:2: label 'three' is not one"),
    ("labels_csv: labels.csv", [["image", "label"], ["train_00.png", "odd"],
                                ["train_00.png", "even"]], r"labels.csv:3: .* already has a row"),
    ("labels_csv: labels.csv", [["image", "label"], ["../train_00.png", "odd"]],
     "must stay inside the dataset folder"),
    ("labels_csv: labels.csv", [["image", "label"], ["/etc/passwd", "odd"]],
     "must be a path inside the dataset folder"),
    ("labels_csv: labels.csv", [["image", "label"], ["train_00.png", "odd;even"]],
     "exactly one label per image"),
    ("labels_csv: ../labels.csv", None, "labels_csv file must stay inside"),
    ("labels_csv: {file: labels.csv, kind: regression}", None, "kind must be classify or multi"),
    ("labels_csv: labels.csv", [["image", "label"], ["train_00.png", "odd"]],
     r"image train_01.png has no row in labels.csv"),
])
def test_bad_csv_is_one_line(tmp_path, spec, rows, message):
    _write_folder(tmp_path, spec, rows)
    with pytest.raises(LeannetError, match=message) as err:
        multihead_view(get_source(f"yolo:{tmp_path}", image_size=64), "detect,classify")
    assert "\n" not in str(err.value)
