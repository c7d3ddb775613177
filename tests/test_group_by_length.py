"""Length-grouped training batches (`trainer.group_by_length`, harness/train/sampler.py): every example once per
epoch, batches of similar length (measurably less padding), the same order for the same seed, the same rest of an
epoch after a resume; off by default and in a run's identity only when on."""
import random

import pytest
import torch
from omegaconf import OmegaConf

from harness import results
from harness.report.records import records_to_frame
from harness.runner import run
from harness.train.sampler import LengthGroupedShuffle, ResumableShuffle, make_sampler
from tests.conftest import compose_cfg

B = 16


def lengths(n: int = 1000, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 128) for _ in range(n)]


def epoch_batches(sampler, generator=None) -> list[list[int]]:
    """The batches a DataLoader cuts from the sampler's order, as the training loop's does (the loop's generator
    also gives the DataLoader its base seed, a draw of its own)."""
    loader = torch.utils.data.DataLoader(range(sampler.n), batch_size=B, sampler=sampler, generator=generator,
                                         collate_fn=list)
    return list(loader)


def padding(batches: list[list[int]], lengths_: list[int]) -> float:
    """The share of padded positions when each batch is padded to its longest example."""
    padded = sum(len(batch) * max(lengths_[i] for i in batch) for batch in batches)
    return 1 - sum(lengths_[i] for batch in batches for i in batch) / padded


def test_every_example_once_per_epoch_and_only_the_last_batch_short():
    lens = lengths(1000)                            # 1000 = 62 batches of 16 + 8
    generator = torch.Generator().manual_seed(0)
    sampler = LengthGroupedShuffle(lens, B, generator)
    assert sampler.mega == 15                      # min(50, 1000 // (4·16)) batches per mega-batch
    epochs = [epoch_batches(sampler, generator) for _ in range(3)]
    for batches in epochs:
        assert sorted(i for batch in batches for i in batch) == list(range(1000))
        assert [len(b) for b in batches] == [B] * 62 + [8]
    assert epochs[0] != epochs[1]                  # a new order each epoch


def test_batches_are_length_homogeneous():
    lens = lengths(1000)
    grouped = epoch_batches(LengthGroupedShuffle(lens, B, torch.Generator().manual_seed(0)))
    plain = epoch_batches(ResumableShuffle(1000, torch.Generator().manual_seed(0)))
    # lengths uniform in [5, 128]: a random batch of 16 pads to about its maximum (~121) against a mean of ~66, a
    # batch from a sorted mega-batch of 240 to within ~8 tokens of its own lengths
    assert padding(plain, lens) > 0.4
    assert padding(grouped, lens) < 0.08
    spread = sorted(max(lens[i] for i in b) - min(lens[i] for i in b) for b in grouped[:-1])
    assert spread[-3] <= 15   # but for the two batches of the last mega-batch, which holds only 40 examples


def test_same_seed_same_order_another_seed_another():
    lens = lengths(300)
    order = lambda seed: LengthGroupedShuffle(lens, B, torch.Generator().manual_seed(seed)).order()  # noqa: E731
    assert order(3) == order(3)
    assert order(3) != order(4)


def test_a_small_set_still_shuffles_within_one_mega_batch_per_batch():
    lens = lengths(40)                             # 40 // 64 = 0 → one batch per mega-batch: sorting within a batch
    sampler = LengthGroupedShuffle(lens, B, torch.Generator().manual_seed(0))
    assert sampler.mega == 1
    assert sorted(sampler.order()) == list(range(40))


@pytest.mark.parametrize("done", [0, 1, 30, 62])
def test_a_resume_mid_epoch_replays_the_same_rest_of_the_epoch(done):
    """As the training loop does: the generator's state when the epoch began is checkpointed with the number of
    batches done; a new process restores it, skips those examples, and gets the rest of the same epoch."""
    lens = lengths(1000)
    generator = torch.Generator().manual_seed(7)
    epoch_batches(make_sampler({"input_ids": [[0] * n for n in lens]}, True, B, generator), generator)   # epoch 1
    at_epoch_start = generator.get_state()
    sampler = make_sampler({"input_ids": [[0] * n for n in lens]}, True, B, generator)
    whole = epoch_batches(sampler, generator)
    resumed_generator = torch.Generator().manual_seed(12345)        # another process: another state, then restored
    resumed = make_sampler({"input_ids": [[0] * n for n in lens]}, True, B, resumed_generator)
    resumed_generator.set_state(at_epoch_start)
    resumed.skip = done * B
    assert epoch_batches(resumed, resumed_generator) == whole[done:]
    assert epoch_batches(resumed, resumed_generator) == epoch_batches(sampler, generator)   # and the epochs after


def test_the_setting_is_off_by_default_and_in_the_identity_only_when_on(tiny_overrides):
    ids = [results.run_id(OmegaConf.to_container(compose_cfg(*tiny_overrides, *extra), resolve=True))
           for extra in ([], ["trainer.group_by_length=false"], ["~trainer.group_by_length"],
                         ["trainer.group_by_length=true"])]
    assert compose_cfg(*tiny_overrides).trainer.group_by_length is False
    assert ids[0] == ids[1] == ids[2] != ids[3]   # earlier runs (no such key) keep their ids, and their folders


def test_reports_pool_records_from_before_the_setting_with_its_default_and_split_it_when_on():
    def record(seed, **trainer):
        return {"status": "completed", "model": "minilm", "task": "sst2", "method": "lora", "seed": seed,
                "run_id": f"r{seed}{trainer}", "config": {"method": {"name": "lora", "r": 8},
                                                          "trainer": {"lr": 0.002, **trainer}},
                "metrics": {"headline": "accuracy", "best": {"accuracy": 0.8}}, "_source": f"{seed}{trainer}"}

    frame = records_to_frame([record(0), record(1, group_by_length=False)])
    assert frame["variant"].nunique() == 1                        # one configuration: pooled as two seeds
    frame = records_to_frame([record(0), record(1, group_by_length=False), record(2, group_by_length=True)])
    assert sorted(set(frame["variant"])) == ["r=8 group_by_length=False", "r=8 group_by_length=True"]


def test_a_grouped_run_pads_less_and_resumes_to_the_same_numbers(tiny_overrides, tmp_path, monkeypatch):
    from tests.test_resume import Crash, _crash_after_saves

    # RTE's fixture pairs differ in length ("no" or the sentence again as the hypothesis); batch 4 of 32 examples:
    # mega-batches of 2 batches
    base = [*tiny_overrides, "task=glue/rte", "method=full_ft", "trainer.lr=3e-3", "trainer.batch_size=4",
            "trainer.epochs=2", "trainer.checkpoint_every=5"]
    plain = run(compose_cfg(*base), tmp_path / "plain")
    grouped = run(compose_cfg(*base, "trainer.group_by_length=true"), tmp_path / "whole")
    assert grouped["cost"]["padding_share"] < plain["cost"]["padding_share"]
    saves = _crash_after_saves(monkeypatch, 3)
    with pytest.raises(Crash):
        run(compose_cfg(*base, "trainer.group_by_length=true"), tmp_path / "resumed")
    monkeypatch.undo()
    assert saves[-1] == (10, 2, 2)   # killed two batches into epoch 2 (8 batches an epoch)
    resumed = run(compose_cfg(*base, "trainer.group_by_length=true"), tmp_path / "resumed")
    assert resumed["metrics"]["per_epoch"] == grouped["metrics"]["per_epoch"]   # train losses: the same batches
    assert resumed["cost"]["padding_share"] == grouped["cost"]["padding_share"]
