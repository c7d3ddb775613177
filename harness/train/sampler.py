"""The training order: a seeded shuffle that can start part-way through an epoch, and its length-grouped variant
(`trainer.group_by_length`).

Both draw an epoch's whole order from the DataLoader's generator when the epoch begins, and skip the examples already
used after a resume (`skip`): restoring the generator as it was at the epoch's start (the checkpoint holds it,
harness/train/state.py) and setting `skip` replays exactly the rest of that epoch, without collating the skipped
batches.

Length grouping is the idea of fairseq's `batch_by_size` and transformers' `LengthGroupedSampler`, written here on its
own terms: shuffle, cut the shuffled order into mega-batches of k batches, sort each mega-batch by length so that each
of its batches holds examples of similar length (less padding, so less compute per example), then shuffle the batches.
k = min(50, n / (4 · batch size)), at least 1: transformers' rule, which keeps at least four mega-batches on a small
training set so that the order stays random. Every batch is full but the epoch's last one (the rest, n mod batch size
examples), which stays last: the DataLoader cuts the order into consecutive batches, and a resume skips whole ones.
"""
from __future__ import annotations

import torch


class ResumableShuffle(torch.utils.data.Sampler):
    """A seeded shuffle, as RandomSampler, that a resume can start part-way through an epoch (`skip` examples in)."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator, self.skip = n, generator, 0

    def __len__(self):
        return self.n - self.skip

    def order(self) -> list[int]:
        return torch.randperm(self.n, generator=self.generator).tolist()

    def __iter__(self):
        order = self.order()
        skip, self.skip = self.skip, 0
        return iter(order[skip:])


class LengthGroupedShuffle(ResumableShuffle):
    """Batches of similar length in a random order (module docstring); `lengths[i]`: example i's token count."""

    MAX_MEGA = 50   # batches per mega-batch at most (transformers' default multiplier)

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator):
        super().__init__(len(lengths), generator)
        self.lengths, self.batch_size = list(lengths), batch_size
        self.mega = max(1, min(self.MAX_MEGA, self.n // (4 * batch_size)))

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in training order (draws from the generator: once per epoch)."""
        shuffled = torch.randperm(self.n, generator=self.generator).tolist()
        size, b = self.mega * self.batch_size, self.batch_size
        batches = []
        for start in range(0, self.n, size):
            # longest first within the mega-batch; the shuffle decides between equal lengths (a stable sort)
            chunk = sorted(shuffled[start:start + size], key=lambda i: -self.lengths[i])
            batches += [chunk[i:i + b] for i in range(0, len(chunk), b)]
        rest = batches[-1:] if len(batches[-1]) < b else []   # only the last mega-batch can end short
        full = batches[:len(batches) - len(rest)]
        return [full[i] for i in torch.randperm(len(full), generator=self.generator).tolist()] + rest

    def order(self) -> list[int]:
        return [i for batch in self.batches() for i in batch]


def make_sampler(train_ds, group_by_length: bool, batch_size: int, generator: torch.Generator) -> ResumableShuffle:
    """The training set's sampler: length-grouped (by `input_ids` length) or a plain shuffle."""
    if group_by_length:
        return LengthGroupedShuffle([len(ids) for ids in train_ds["input_ids"]], batch_size, generator)
    return ResumableShuffle(len(train_ds), generator)

