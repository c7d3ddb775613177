"""Peak allocated tensor bytes of a training step, exactly and the same from run to run for a given batch.

On CUDA it is the caching allocator's own count (torch.cuda.max_memory_allocated). On CPU torch keeps no such count,
but its profiler sees every allocation and free of the CPU allocator (`profile_memory=True`): the running sum of those
events in time order is the bytes the step has allocated and not yet freed, and its maximum is the step's peak above
what was live when it began. Adding the bytes live at the start (parameters, buffers, gradients, optimiser state and
the batch, each storage once) gives the step's peak allocated bytes. Unlike the process's peak RSS, which also holds
the allocator's cached pages, the interpreter and the libraries, and wanders between runs, this depends only on the
model, the method and the batch. One profiled step costs about as much as a few plain ones.
"""
from __future__ import annotations

from typing import Callable, Iterable


def _tensors(obj) -> Iterable:
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def live_bytes(model, optimizer=None, batch=None) -> int:
    """Bytes held by the model's parameters, gradients and buffers, the optimiser's state and the batch, each storage
    counted once (tied weights, views)."""
    seen: dict[int, int] = {}
    found = [*model.parameters(), *(p.grad for p in model.parameters() if p.grad is not None), *model.buffers(),
             *_tensors(optimizer.state if optimizer is not None else {}), *_tensors(batch)]
    for tensor in found:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def profiled_peak(fn: Callable[[], object]) -> int:
    """The peak, in bytes, of CPU allocations made by `fn` and not yet freed, over its run (0 if it allocates
    nothing). A free of memory allocated before the call is not reported by the profiler, so it never lowers the sum."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())   # stable: events of the same nanosecond keep the recorded order
    running = peak = 0
    for event in events:
        running += event.nbytes()
        peak = max(peak, running)
    return peak


def step_peak_bytes(step: Callable[[], object], model, optimizer, batch, device) -> int:
    """Peak allocated tensor bytes of one call of `step` (forward, backward, optimiser step): the CUDA allocator's
    peak on a GPU; on CPU the bytes live before it plus the profiled peak of what it allocates."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    before = live_bytes(model, optimizer, batch)
    return before + profiled_peak(step)
