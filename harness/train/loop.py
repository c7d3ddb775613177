"""The training loop: explicit, top to bottom, on 🤗 Accelerate (device placement, bf16/fp16 on GPU, gradient
accumulation; `accelerate launch` for several GPUs). AdamW + linear schedule with warmup, grad-norm clipping, evaluation
every epoch and selection of the best epoch on the task's headline metric (the paper's protocol).

Crash-safe: with a `Checkpoints` folder, training state is saved every `checkpoint_every` optimiser steps and at each
epoch end, and a later call resumes from the newest checkpoint, on CPU to the same final numbers as a run that was never
interrupted (the rest of an interrupted epoch replays the same batches in the same order: harness/train/checkpoint.py).
A non-finite loss or gradient skips its batch up to `nonfinite_retries` times, then ends the run as diverged.

Console and log: the progress bar shows the training rate without evaluation time (its clock pauses while evaluating);
each evaluation writes one line (training loss, eval metrics, eval loss where the evaluator gives one, seconds spent
training since the last evaluation and evaluating) to the `harness.train.loop` logger, so Hydra's `run.log` has it
too, printed above the bar."""
from __future__ import annotations

import logging
import math
import statistics
import time
from typing import Callable

import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from harness import flops as flop_count
from harness.train.checkpoint import Checkpoints, trainable_state
from harness.train.config import TrainerConfig
from harness.train.setup import Setup, StepHooks, peak_memory_bytes, prepare
from harness.train.state import Diverged, TrainingState, TrainResult

log = logging.getLogger(__name__)
__all__ = ["Diverged", "StepHooks", "TrainResult", "fit"]


def train_step(s: Setup, batch: dict, max_grad_norm: float | None, step: int) -> tuple[float, bool, str | None]:
    """Forward, backward (the task loss plus the method's regulariser, if any), and at the end of an accumulation
    window: clip, optimiser step `step`, the method's after_step, zero the gradients. Returns (task loss, ok, what was
    non-finite): a non-finite loss is not back-propagated, a non-finite gradient norm skips the step (and after_step)."""
    hooks, accelerator = s.hooks, s.accelerator
    with accelerator.accumulate(s.model):
        loss = s.loss_fn(s.model, batch)
        value = loss.item()
        finite_loss, finite_grad, norm = math.isfinite(value), True, None
        if finite_loss:
            extra = hooks.regularizer(s.unwrapped) if hooks.regularizer else None
            accelerator.backward(loss if extra is None else loss + extra)
        if accelerator.sync_gradients:
            norm = accelerator.clip_grad_norm_(s.trainable, max_grad_norm or math.inf)
            finite_grad = bool(torch.isfinite(norm))
            if finite_grad:
                s.stepper.step()
                if hooks.after_step:
                    hooks.after_step(s.unwrapped, step, s.total_steps)   # before zero_grad: it may read the gradients
            s.stepper.zero_grad(set_to_none=True)
    if finite_loss and finite_grad:
        return value, True, None
    return value, False, f"loss ({value})" if not finite_loss else f"gradient norm ({float(norm)})"


def skip_nonfinite(state: TrainingState, what: str, retries: int) -> None:
    """Skip the batch, or give up: never a silent NaN result."""
    state.result.nonfinite_skipped += 1
    where = f"at step {state.step + 1}, epoch {state.epoch}"
    if state.result.nonfinite_skipped > retries:
        raise Diverged(f"non-finite training {what} {where}"
                       + (f", after {retries} skipped batch(es) (trainer.nonfinite_retries)" if retries else ""))
    log.warning("non-finite training %s %s: batch skipped (%d of trainer.nonfinite_retries=%d)", what, where,
                state.result.nonfinite_skipped, retries)


def evaluate_now(s: Setup, state: TrainingState, evaluate: Callable, headline: str, tracker, epoch: float) -> str:
    """Evaluate, record the row, keep the best (higher is better for every metric we select on); returns the
    evaluation's line (`report` writes it)."""
    since = time.perf_counter()
    s.model.eval()
    with torch.no_grad():
        metrics = evaluate(s.unwrapped)
    s.model.train()
    state.clock.add("eval_seconds", since)
    state.counters.add_eval(getattr(metrics, "examples", None))   # an evaluator that does not say: null rate
    seconds = {"train": state.clock.train_seconds() - s.trained_at_eval, "eval": time.perf_counter() - since}
    s.trained_at_eval += seconds["train"]
    result, counters = state.result, state.counters
    row = {"epoch": epoch, "step": state.step, "train_loss": counters.epoch_loss / max(counters.epoch_n, 1), **metrics}
    result.per_epoch.append(row)
    # an evaluator may give its loss beside the metrics (classification): logged and printed, not a metric of the run
    shown = {**metrics, **({"loss": metrics.loss} if getattr(metrics, "loss", None) is not None else {})}
    tracker.log({f"eval/{k}": v for k, v in shown.items()} | {"epoch": epoch}, step=state.step)
    # an evaluation without the headline (a split without references: nothing scored) cannot rank epochs: the latest
    if result.best_epoch is None or headline not in metrics or metrics[headline] > result.best[headline]:
        result.best, result.best_epoch = dict(metrics), epoch
        result.best_stats = dict(getattr(metrics, "stats", {}))
        result.best_predictions = getattr(metrics, "predictions", None)
        result.best_state = trainable_state(s.unwrapped)
    return (f"epoch {epoch:g} step {state.step}: train_loss={row['train_loss']:.4f} | eval "
            + " ".join(f"{k}={v:.4f}" for k, v in shown.items() if isinstance(v, (int, float)))
            + f" | {seconds['train']:.1f}s training, {seconds['eval']:.1f}s evaluating")


def report(bar, line: str) -> None:
    """An evaluation's line to the log (run.log under Hydra; printed above the bar while `logging_redirect_tqdm`
    holds), or above the bar when nothing would show it; the bar's clock then skips the evaluation's time."""
    log.info(line)
    if not (log.isEnabledFor(logging.INFO) and log.hasHandlers()):
        bar.write(line)
    bar.unpause()


def resume(s: Setup, tcfg: TrainerConfig, checkpoints: Checkpoints | None, on_progress: Callable) -> TrainingState:
    """The newest checkpoint's state, restored (the rest of its epoch replays the same batches), or a fresh one."""
    saved = checkpoints.latest() if checkpoints else None
    if not saved:
        return TrainingState()
    state = TrainingState.restore(saved, s.parts(), s.generator)
    s.sampler.skip = state.batch * tcfg.batch_size
    log.info("resuming at step %d (epoch %d, %d batch(es) in) from %s", state.step, state.epoch, state.batch,
             checkpoints.folder)
    on_progress(state.result)
    TrainingState.resume_rng(saved)
    return state


def log_step(s: Setup, state: TrainingState, tcfg: TrainerConfig, tracker, bar, loss: float) -> None:
    tokens_per_second = state.counters.tokens / max(state.clock.train_seconds(), 1e-9)
    bar.update(1)
    bar.set_postfix_str(f"loss={loss:.4f}, tok_s={tokens_per_second:.0f}", refresh=False)   # as set_postfix shows it
    if (state.step % tcfg.log_every == 0 or state.step == s.total_steps) and state.counters.window_n:
        tracker.log({"train/loss": state.counters.take_window(), "train/lr": s.scheduler.get_last_lr()[0],
                     "train/tokens_per_second": tokens_per_second, "epoch": state.epoch}, step=state.step)


def cost(s: Setup, state: TrainingState, step_times: list[float]) -> dict:
    totals = state.clock.totals()
    device, precision = s.accelerator.device, s.accelerator.mixed_precision
    rates = state.counters.rates(totals["train_seconds"], totals["eval_seconds"])
    name = flop_count.device_name(device)
    peak = flop_count.peak_flops(name, precision)
    # seconds to the microsecond: the rates beside them must be reproducible from them even for runs of milliseconds
    return {"train_seconds": round(totals["train_seconds"], 6), "eval_seconds": round(totals["eval_seconds"], 6),
            "checkpoint_seconds": round(totals["checkpoint_seconds"], 6),
            "peak_memory_bytes": peak_memory_bytes(device),
            "tokens_per_second": round(state.counters.tokens / max(totals["train_seconds"], 1e-9), 1),
            "step_seconds_median": round(statistics.median(step_times), 5) if step_times else None,
            "steps": state.step, "device": str(device), "precision": precision, **rates,
            # model FLOPs utilisation: achieved over the device's peak at this precision (null on CPU / unknown GPU)
            "device_name": name, "peak_flops": peak,
            "mfu": round(rates["flops_per_second"] / peak, 4) if peak and rates["flops_per_second"] else None}


def train_epoch(s: Setup, state: TrainingState, tcfg: TrainerConfig, bar, tracker, step_times: list[float],
                evaluate_at: Callable, checkpoints: Checkpoints | None, on_progress: Callable) -> None:
    """The batches of epoch `state.epoch` (the rest of it, after a resume): steps, step-interval evaluations and
    checkpoints; stops at the last step of the run."""
    epoch_generator = s.generator.get_state()  # this epoch's order is drawn from here: a checkpoint replays it
    t_step = time.perf_counter()
    for batch in s.loader:
        state.batch += 1
        loss, ok, what = train_step(s, batch, tcfg.max_grad_norm, state.step + 1)
        if ok:
            ids = batch["input_ids"]
            mask = batch.get("attention_mask")
            lengths = mask.sum(1).to(torch.int64).tolist() if mask is not None else [ids.shape[1]] * len(ids)
            state.counters.add(loss, sum(lengths), ids.numel(), s.step_flops.batch(lengths) if s.step_flops else None)
            state.result.losses.append(loss)
        else:
            skip_nonfinite(state, what, tcfg.nonfinite_retries)
        if not s.accelerator.sync_gradients:
            continue
        s.scheduler.step()
        state.step += 1
        if s.accelerator.device.type == "cuda":
            torch.cuda.synchronize(s.accelerator.device)
        step_times.append(time.perf_counter() - t_step)
        log_step(s, state, tcfg, tracker, bar, loss)
        if state.step >= s.total_steps:
            break
        evaluated = bool(tcfg.eval_every_steps and state.step % tcfg.eval_every_steps == 0)
        if evaluated:
            evaluate_at(round(state.step / s.steps_per_epoch, 3))
        if checkpoints and checkpoints.due(state.step):  # after any evaluation at this step: it draws from RNG
            state.save(checkpoints, s.parts(), state.epoch, state.batch, epoch_generator)
        if evaluated:
            on_progress(state.result)
        t_step = time.perf_counter()


def fit(model, train_ds, tcfg: TrainerConfig, *, collate: Callable, evaluate: Callable, headline: str,
        tracker, seed: int, loss_fn: Callable | None = None, accelerator=None, checkpoints: Checkpoints | None = None,
        on_progress: Callable | None = None, hooks: StepHooks | None = None) -> TrainResult:
    """Train `model` on `train_ds`; `evaluate(model) -> {metric: value}` runs after every epoch (and every
    `eval_every_steps`); the best evaluation on `headline` is kept. With `checkpoints`, training resumes from the
    newest checkpoint there and saves new ones; `on_progress(result)` runs after each evaluation, so that the caller
    can record the history so far. `hooks`: the method's optimiser groups, regulariser and after-step hook
    (StepHooks). Before training, `loss_fn` also runs on three unpadded probe rows, whose FLOPs fix the cost record's
    count (harness/flops.py)."""
    on_progress = on_progress or (lambda result: None)
    s = prepare(model, train_ds, tcfg, collate, seed, loss_fn, accelerator, hooks)
    state = resume(s, tcfg, checkpoints, on_progress)
    s.trained_at_eval = state.clock.train_seconds()
    bar = tqdm(total=s.total_steps, initial=state.step, desc="train", disable=not tcfg.progress, dynamic_ncols=True,
               mininterval=1.0)
    step_times: list[float] = []

    def evaluate_at(epoch: float) -> None:
        report(bar, evaluate_now(s, state, evaluate, headline, tracker, epoch))

    with logging_redirect_tqdm():
        if s.total_steps == 0 and not state.result.per_epoch:  # trainer.epochs=0: the untrained (zero-shot) baseline
            evaluate_at(0)
            on_progress(state.result)
        s.model.train()
        for state.epoch in range(state.epoch, s.epochs + 1):
            if state.step >= s.total_steps:
                break
            train_epoch(s, state, tcfg, bar, tracker, step_times, evaluate_at, checkpoints, on_progress)
            whole = state.step % s.steps_per_epoch == 0 or state.step < s.total_steps
            evaluate_at(state.epoch if whole else round(state.step / s.steps_per_epoch, 3))
            state.batch = 0
            state.counters.new_epoch()
            if checkpoints:
                state.save(checkpoints, s.parts(), state.epoch + 1, 0, s.generator.get_state())
            on_progress(state.result)
    bar.close()
    state.result.steps, state.result.cost = state.step, cost(s, state, step_times)
    return state.result
