"""Model folders: round trip, atomic replace, refusal of pickles and of mismatched weights."""
import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import leannet
from leannet.errors import LeannetError
from leannet.files import atomic_write_json, prepare_out_dir


def _model():
    torch.manual_seed(0)
    return leannet.create_model("simple_cnn", channels=[4, 8], hidden=16, image_size=16)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = _model().eval()
    folder = leannet.save(model, tmp_path / "model", metrics={"accuracy": 0.5})
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "metrics.json", "weights.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == "simple_cnn" and config["plans"] == []
    assert config["leannet_version"] == leannet.__version__
    loaded = leannet.load(folder)
    x = torch.randn(4, 1, 16, 16)
    assert torch.equal(model(x), loaded(x))


def test_saving_over_an_existing_folder_replaces_it_whole(tmp_path):
    leannet.save(_model(), tmp_path / "model")
    (tmp_path / "model" / "stale.txt").write_text("old")
    leannet.save(_model(), tmp_path / "model")
    assert not (tmp_path / "model" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp folders left behind


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch EXPLOITED",))


def test_a_planted_pickle_is_refused_and_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "model.pt").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(LeannetError, match="pickle files are refused"):
        leannet.load(folder)
    assert not (tmp_path / "EXPLOITED").exists()


def test_a_pickle_renamed_to_safetensors_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = leannet.save(_model(), tmp_path / "model")
    (folder / "weights.safetensors").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(LeannetError, match="not a valid safetensors file"):
        leannet.load(folder)
    assert not (tmp_path / "EXPLOITED").exists()


def test_mismatched_or_missing_weights_are_named(tmp_path):
    folder = leannet.save(_model(), tmp_path / "model")
    weights = {"fc2.weight": torch.zeros(3, 3)}
    save_file(weights, str(folder / "weights.safetensors"))
    with pytest.raises(LeannetError, match="missing .*shape mismatch fc2.weight"):
        leannet.load(folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(LeannetError, match="no weights.safetensors"):
        leannet.load(folder)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(LeannetError, match="is not a model folder"):
        leannet.load(tmp_path / "absent")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text("{not json")
    with pytest.raises(LeannetError, match="not valid JSON"):
        leannet.load(tmp_path / "x")


def test_models_not_from_the_registry_cannot_be_saved(tmp_path):
    with pytest.raises(LeannetError, match="create_model"):
        leannet.save(torch.nn.Linear(2, 2), tmp_path / "m")


def test_prepare_out_dir_refuses_existing_unless_forced(tmp_path):
    atomic_write_json(tmp_path / "out" / "result.json", {"a": 1})
    with pytest.raises(LeannetError, match="--force"):
        prepare_out_dir(tmp_path / "out")
    assert prepare_out_dir(tmp_path / "out", force=True).is_dir()
    assert json.loads((tmp_path / "out" / "result.json").read_text()) == {"a": 1}
