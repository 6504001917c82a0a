"""Output folders and model folders never lose what the user had."""
import json
import os
import stat

import pytest
import torch

import leannet
from leannet import files
from leannet.errors import LeannetError


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = files.atomic_write_text(tmp_path / "a.txt", "hi")
    finally:
        os.umask(old)
    assert path.read_text() == "hi"
    assert _mode(path) == 0o644  # mkstemp alone gives 0600


def test_json_with_nan_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(LeannetError, match="NaN"):
        files.atomic_write_json(tmp_path / "r.json", {"metric": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_output_folder_new_path_is_removed_when_the_run_fails(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), files.output_folder(out) as work:
        assert work == out
        (work / "history.jsonl").write_text("{}\n")
        raise RuntimeError("training diverged")
    assert not out.exists()


def test_output_folder_keeps_the_old_output_until_the_new_one_is_complete(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text('{"old": true}')
    with pytest.raises(LeannetError, match="--force"), files.output_folder(out):
        pass
    with pytest.raises(RuntimeError), files.output_folder(out, force=True) as work:
        assert work != out
        (work / "result.json").write_text('{"new": true}')
        assert json.loads((out / "result.json").read_text()) == {"old": True}
        raise RuntimeError("killed halfway")
    assert json.loads((out / "result.json").read_text()) == {"old": True}
    assert not files.staging_dir(out).exists()
    with files.output_folder(out, force=True) as work:
        (work / "result.json").write_text('{"new": true}')
    assert json.loads((out / "result.json").read_text()) == {"new": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_resume_finds_the_run_in_the_folder_or_its_staging_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(LeannetError, match="no interrupted run"), \
            files.output_folder(out, resume_marker="state.json"):
        pass
    staging = files.staging_dir(out)
    staging.mkdir()
    (staging / "state.json").write_text("{}")
    out.mkdir()
    (out / "old.txt").write_text("old")
    with files.output_folder(out, resume_marker="state.json") as work:
        assert work == staging
    assert (out / "state.json").exists() and not (out / "old.txt").exists()


def test_a_crash_between_two_renames_is_recovered(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)  # no atomic exchange here
    target, new = tmp_path / "model", tmp_path / "new"
    target.mkdir()
    (target / "config.json").write_text("old")
    new.mkdir()
    real_replace = os.replace
    calls = []

    def crash_on_second(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between the renames
        real_replace(a, b)

    monkeypatch.setattr(files.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        files.replace_dir(new, target)
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert not target.exists()
    files.recover_dir(target)
    assert (target / "config.json").read_text() == "old"


def test_atomic_exchange_replaces_a_folder_in_one_step(tmp_path):
    target, new = tmp_path / "model", tmp_path / "new"
    target.mkdir()
    (target / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    files.replace_dir(new, target)
    assert (target / "a").read_text() == "new" and not new.exists()


def test_save_refuses_a_folder_that_is_not_a_model_folder(tmp_path):
    model = leannet.create_model("simple_cnn", channels=[4, 8], hidden=8, image_size=8)
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(LeannetError, match="not a leannet model folder"):
        leannet.save(model, precious)
    assert (precious / "holiday.jpg").read_bytes() == b"\xff\xd8"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    with pytest.raises(LeannetError):
        leannet.save(model, a_file)
    assert a_file.read_text() == "keep"
    path = leannet.save(model, tmp_path / "m")
    leannet.save(model, path)  # a model folder is replaced
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(leannet.load(path)(x), model.eval()(x))
