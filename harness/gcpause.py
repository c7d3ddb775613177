"""Python's cyclic garbage collector held off while a run starts up.

Importing torch, transformers, datasets and W&B creates some 800,000 objects that live as long as the process; each
time the objects that survived collections grow by a quarter, CPython runs a full collection, which scans them all
again: 8 full collections, about 1 s of the 8 s from `harness-run` to MiniLM's first training step (issue 18). Held
from the start of `harness-run` (and of every `runner.run`) until the run's config is validated (the last of those
imports), then released: what is there is frozen (`gc.freeze`: later collections skip it) and the collector runs as
before. The first release in a process freezes without collecting (a collection there would cost what it saves; the
garbage it leaves, some 30,000 objects from imports and the validation's weightless model, is a few MB, once); every
later one collects first, so that nothing of an earlier run in the process (a multirun's, a test's) is ever frozen.
"""
from __future__ import annotations

import gc

_held = False     # whether this module turned the collector off (a caller's own gc.disable() is left alone)
_released = False   # whether a release has frozen the start-up's objects in this process already


def hold() -> None:
    """No automatic collection from here until `release()`."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    """What is there frozen (after a collection, but for the process's first release), the collector on again;
    nothing when `hold()` did not turn it off."""
    global _held, _released
    if _held:
        if _released:
            gc.collect()
        gc.freeze()
        _held, _released = False, True
        gc.enable()
