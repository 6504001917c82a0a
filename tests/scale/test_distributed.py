"""The sharding rules that make ranks agree, checked without starting processes."""
import torch
from torch.utils.data import DataLoader, TensorDataset

from leannet import distributed
from leannet.distributed import ShardSampler, TrainShardSampler


def test_one_process_reads_one_seeded_permutation_in_order():
    data = TensorDataset(torch.arange(103))
    expected = torch.randperm(103, generator=torch.Generator().manual_seed(7)).tolist()
    ours = DataLoader(data, batch_size=10, sampler=ShardSampler(103, shuffle=True, seed=7))
    assert sum((b[0].tolist() for b in ours), []) == expected
    assert list(ShardSampler(5)) == [0, 1, 2, 3, 4]  # evaluation: in order


def test_shards_split_one_order_without_repeats_and_sum_to_it():
    order = ShardSampler(103, shuffle=True, seed=3, limit=50, num_replicas=1, rank_=0).order()
    shards = [list(ShardSampler(103, shuffle=True, seed=3, limit=50, num_replicas=3, rank_=r))
              for r in range(3)]
    assert sorted(sum(shards, [])) == sorted(order) and len(order) == 50
    assert [len(s) for s in shards] == [17, 17, 16]
    assert [len(ShardSampler(103, limit=50, num_replicas=3, rank_=r)) for r in range(3)] == \
        [17, 17, 16]


def test_training_shards_are_equal_and_change_with_the_epoch():
    shards = [TrainShardSampler(103, shuffle=True, seed=1, num_replicas=2, rank_=r)
              for r in range(2)]
    first = [list(s) for s in shards]
    assert [len(s) for s in first] == [52, 52] == [len(s) for s in shards]
    assert set(first[0]) | set(first[1]) == set(range(103))
    for s in shards:
        s.set_epoch(1)
    assert [list(s) for s in shards] != first


def test_alone_every_helper_is_a_no_op(tmp_path):
    assert not distributed.active() and distributed.rank() == 0 and distributed.is_main()
    assert distributed.world_size() == 1
    assert distributed.all_sum_floats([1.5, 2.0]) == [1.5, 2.0]
    assert distributed.same_everywhere([1.0])
    distributed.barrier()
    assert distributed.local_device("cpu") == torch.device("cpu")
    with distributed.output_folder(tmp_path / "out") as work:
        (work / "x.txt").write_text("1")
    assert (tmp_path / "out" / "x.txt").read_text() == "1"
    module = torch.nn.Linear(2, 2)
    assert distributed.unwrap(module) is module
