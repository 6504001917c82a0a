"""torchrun / DDP on 2 CPU processes (gloo): train, calibrate, prune one step and evaluate, and
the plan equals the single-process plan on the same data.

The two ranks are forked from the test process (the already-imported torch and leannet come
along, where torchrun would import them again in each process) and joined through the same
environment variables torchrun sets, so they run the very code `torchrun -m leannet` runs.
"""
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from leannet import distributed
from leannet.jobs.prune import PruneJob, run_prune_job
from leannet.jobs.train import TrainJob, run_train

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prune_job(model_dir: Path, out: Path) -> PruneJob:
    return PruneJob(model_dir, None, out, criterion="mean_activation", target={"macs": 0.6},
                    steps=1, schedule="oneshot", max_drop=1.0, finetune_epochs=1, lr=0.01,
                    batch_size=32, calibration_batches=3, device="cpu", seed=3)


def _rank(rank: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        base = Path(root)
        train = run_train(TrainJob(model="simple_cnn", data="digits", image_size=8, epochs=1,
                                   batch_size=32, out=base / "train", device="cpu"),
                          progress=False)
        pruned = run_prune_job(_prune_job(base / "train" / "model", base / "ddp"))
        again = _prune_job(base / "train" / "model", base / "ddp")
        again.resume = True  # a finished run resumes at once; rank 1 reads a copy of rank 0's
        resumed = run_prune_job(again)
        assert resumed["channels_after"] == pruned["channels_after"]
        # what each rank saw, to compare ranks with each other
        (base / f"rank{rank}.json").write_text(json.dumps({
            "train_accuracy": train["accuracy"], "processes": train["processes"],
            "baseline": pruned["baseline"]["metrics"], "final": pruned["final"]["metrics"],
            "channels_after": pruned["channels_after"]}))
    finally:
        distributed.shutdown()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_rank, args=(_free_port(), str(root)), nprocs=WORLD, join=True,
                       start_method="fork")
    return root


def test_two_processes_train_prune_and_agree(ddp_run):
    ranks = [json.loads((ddp_run / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0] == ranks[1]  # metrics summed over ranks, the same plan on every rank
    assert ranks[0]["processes"] == WORLD
    assert ranks[0]["train_accuracy"] > 0.3  # one epoch of 8x8 digits, 10 classes
    result = json.loads((ddp_run / "ddp" / "result.json").read_text())
    assert result["steps"][0]["status"] == "accepted"
    assert result["final"]["macs"] < 0.7 * result["baseline"]["macs"]
    # rank 0 alone wrote the folders; the other rank's scratch folder is gone
    assert (ddp_run / "train" / "model" / "weights.safetensors").is_file()
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("leannet-rank1-*"))


def test_the_plan_equals_the_single_process_plan(ddp_run):
    single = run_prune_job(_prune_job(ddp_run / "train" / "model", ddp_run / "single"))
    multi = json.loads((ddp_run / "ddp" / "result.json").read_text())
    plans = [json.loads((ddp_run / run / "model" / "config.json").read_text())["plans"]
             for run in ("single", "ddp")]
    assert plans[0] == plans[1] and plans[0]
    assert single["channels_after"] == multi["channels_after"]
    assert single["channels_after"] != single["channels_before"]
    # evaluation over two shards, summed, is the evaluation of one process
    assert single["baseline"]["metrics"] == multi["baseline"]["metrics"]
