"""Paired evidence between two table cells (two configurations on one task), for bold marking and the claim scorecard.

The strongest evidence available is used, and named in every table and claim row that rests on it:

    examples   every run of both cells kept its best epoch's per-example predictions (predictions.jsonl.gz beside its
               run.json) for the same examples: the difference of the seed-mean headline metric over the seeds both
               cells ran, its paired bootstrap interval and the approximate-randomization p-value (harness/stats.py).
               A generation metric with per-segment statistics (E2E's BLEU and NIST: each MR's clipped n-gram
               matches (NIST: their information), n-gram counts and reference lengths, summed over the MRs as mteval
               does; ROUGE-L and CIDEr-D: each MR's score, averaged as the COCO scorer does; METEOR: each MR's
               statistics from its jar, aggregated as the jar does) is tested the same way
               from the generations.txt and references.txt beside each run.json, on the same references
    seeds      no predictions, but ≥ 2 seeds in common: the per-seed differences, their mean with a Student t interval
               and the exact sign-flip permutation p-value (with 3 seeds the smallest possible p is 0.25)
    one seed   a single seed in common: the difference, with no interval and no test
    unpaired   no seed in common: nothing is compared

Values are on the scorer's scale (0.912, not 91.2).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import subprocess
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from harness import stats
from harness.metrics import glue as glue_metrics
from harness.metrics.e2e import (bleu_counts, coco_inputs, corpus_bleu_of_rows, corpus_meteor_of_rows,
                                 corpus_nist_of_rows, meteor_rows_of, nist_rows, read_references, read_system_outputs,
                                 segment_scores_of)
from harness.report.frames import records

PREDICTIONS = "predictions.jsonl.gz"
GENERATIONS, REFERENCES = "generations.txt", "references.txt"   # a generation run's outputs, the official scorer's files
LEVEL = 0.05   # a cell is "significantly worse" than the column's best at p < LEVEL
UNTESTED = ("one seed", "unpaired")   # evidence kinds with no test: such a cell is never bold beside the best
BATCH_PAIRS = 256   # comparisons computed together: their runs' resampled counts are held at once
# What one report has read and compared (forget() drops it): predictions by run.json path, results by pair.
_SEEN: dict = {"rows": {}, "results": {}, "shared": {}}
# The harness's own lines (harness/runner.py: json.dumps of {"id", "label", "prediction", ...}) with integer values:
# id, label and prediction as one match per line, read without parsing the rest (the scores); other lines: json.
_LINE = re.compile(rb'\{"id": (-?\d+, "label": -?\d+, "prediction": -?\d+)[,}]')
_KEYS = b'" :abcdeilnoprt'   # what _LINE's matches hold besides the numbers and commas: the two keys


def forget() -> None:
    """Drop the predictions and comparisons kept so far: a new report reads its files afresh."""
    for kept in _SEEN.values():
        kept.clear()


def _rows(source: str) -> tuple | None:
    """(ids, labels, predictions) of the run whose run.json is `source`, or None when it kept no predictions; equal
    ids and labels are one shared object, so that runs on one evaluation set are matched by identity."""
    kept = _SEEN["rows"]
    if source not in kept:
        path = Path(source).parent / PREDICTIONS
        found = read_predictions(path) if path.is_file() else None
        if found is not None:
            shared, (ids, labels, preds) = _SEEN["shared"], found
            found = shared.setdefault(ids, ids), shared.setdefault((labels.dtype.str, labels.tobytes()), labels), preds
        kept[source] = found
    return kept[source]


def _coco_rows(metric: str) -> Callable:
    """A run's per-segment ROUGE-L or CIDEr-D (one column; both from one scorer pass) or METEOR statistics, over the
    run's texts PTB-tokenised once."""
    def rows(hypotheses, references):
        texts, shared = (tuple(hypotheses), tuple(map(tuple, references))), _SEEN["shared"]
        if ("coco", texts) not in shared:
            shared[("coco", texts)] = coco_inputs(hypotheses, references)
        if metric == "meteor":
            return meteor_rows_of(*shared[("coco", texts)])
        if ("coco-scores", texts) not in shared:
            shared[("coco-scores", texts)] = segment_scores_of(*shared[("coco", texts)])
        return shared[("coco-scores", texts)][metric][:, None]
    return rows


# Generation metrics tested per segment: metric → (each segment's statistics, one row per segment, from the run's
# hypotheses and references; the corpus metric from rows of those statistics and the labels, unused). BLEU and NIST
# are sums of per-segment counts (mteval); ROUGE-L and CIDEr-D the mean of per-segment scores (the COCO scorer);
# METEOR its jar's aggregate of per-segment statistics.
SEGMENTS = {
    "bleu": (lambda hyps, refs: [bleu_counts(h, rs) for h, rs in zip(hyps, refs)],
             lambda rows, labels: corpus_bleu_of_rows(rows)),
    "nist": (nist_rows, lambda rows, labels: corpus_nist_of_rows(rows)),
    "meteor": (_coco_rows("meteor"), lambda rows, labels: corpus_meteor_of_rows(rows)),
    "rouge_l": (_coco_rows("rouge_l"), lambda rows, labels: float(rows[:, 0].mean())),
    "cider": (_coco_rows("cider"), lambda rows, labels: float(rows[:, 0].mean())),
}


def _segments(source: str, metric: str) -> tuple | None:
    """(the references' key, labels (placeholders), each segment's statistics of `metric`) of the generation run whose
    run.json is `source`, from its generations.txt and references.txt; None when either is missing, their counts
    differ or `metric` has no per-segment statistics. Runs on the same references share one key and one label object."""
    kept, folder = _SEEN["rows"], Path(source).parent
    if (source, metric) not in kept:
        found = None
        if metric in SEGMENTS and (folder / GENERATIONS).is_file() and (folder / REFERENCES).is_file():
            hypotheses, references = read_system_outputs(folder / GENERATIONS), read_references(folder / REFERENCES)
            rows = None
            if hypotheses and len(hypotheses) == len(references):
                try:
                    rows = np.asarray(SEGMENTS[metric][0](hypotheses, references), dtype=float)
                except (OSError, subprocess.CalledProcessError, RuntimeError) as error:   # the COCO scorers' Java
                    warnings.warn(f"{metric}: no per-MR scores for {source} ({error}): compared over seeds")
            if rows is not None:
                key = ("references", hashlib.sha256((folder / REFERENCES).read_bytes()).hexdigest())
                shared = _SEEN["shared"]
                labels = shared.setdefault(("segments", len(rows)), np.zeros(len(rows)))
                found = shared.setdefault(key, key), labels, rows
        kept[(source, metric)] = found
    return kept[(source, metric)]


def read_predictions(path: Path) -> tuple:
    """(ids as a hashable key, labels, predictions) of a predictions.jsonl.gz."""
    return _parse(gzip.decompress(path.read_bytes()))


def _parse(text: bytes) -> tuple:
    """(ids as a hashable key, labels, predictions) of a predictions.jsonl: straight from the bytes when every line
    is of the harness's shape with integer id, label and prediction (classification); else as JSON."""
    found = _LINE.findall(text)
    if found and len(found) == text.count(b"\n"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # numpy warns (and reads on) where text is not a number: read as JSON
            try:
                triples = np.fromstring(b",".join(found).translate(None, _KEYS), dtype=np.int64, sep=",")
            except (ValueError, DeprecationWarning):
                triples = np.zeros(0, dtype=np.int64)
        if len(triples) == 3 * len(found):
            triples = triples.reshape(-1, 3)
            return ("int", triples[:, 0].tobytes()), triples[:, 1].copy(), triples[:, 2].copy()
    rows = json.loads("[" + ",".join(line for line in text.decode("utf-8").splitlines() if line.strip()) + "]")
    ids = [r["id"] for r in rows]
    key = ("int", np.array(ids, dtype=np.int64).tobytes()) if all(type(i) is int for i in ids) else tuple(ids)
    return key, np.array([r["label"] for r in rows]), np.array([r["prediction"] for r in rows])


def by_seed(runs, columns=None) -> dict:
    """seed → the run's row as a dict of `columns` (default: all) with its seed and source (the latest record of a
    seed if a cell holds several). `runs`: a frame, or its rows already as dicts (frames.records)."""
    rows = runs if isinstance(runs, list) else records(runs, None if columns is None else ["seed", "source", *columns])
    return {row["seed"]: row for row in rows}


def compare(runs_a, runs_b, metric: str, seed: int = 0) -> dict:
    """A − B on the headline `metric` over the seeds both ran: {diff, low, high, p_value, seeds, examples, evidence}."""
    return compare_many([(runs_a, runs_b, metric)], seed)[0]


def compare_many(pairs: list[tuple], seed: int = 0) -> list[dict]:
    """compare for each (runs_a, runs_b, metric) of `pairs`. Each pair is compared once per report (the bold marks
    and the claim scorecard share the results), and the paired tests on one evaluation set are computed together
    (stats.paired_differences: each run's resampled counts once, not once per comparison it takes part in)."""
    results, batches, keys = _SEEN["results"], {}, []
    for runs_a, runs_b, metric in pairs:
        column = f"metrics.best.{metric}"
        a, b = by_seed(runs_a, [column]), by_seed(runs_b, [column])
        shared = sorted(set(a) & set(b))
        per_seed = [float(a[s][column]) - float(b[s][column]) for s in shared]
        keys.append((metric, seed, tuple((a[s]["source"], b[s]["source"]) for s in shared), tuple(per_seed)))
        if keys[-1] in results:
            continue
        sources = [a[s]["source"] for s in shared], [b[s]["source"] for s in shared]
        paired = _paired_predictions(*sources)
        if paired is None and metric in SEGMENTS:   # a generation task's corpus metric: per-segment statistics
            paired = _paired_predictions(*sources, read=lambda source: _segments(str(source), metric))
            if paired:
                labels, rows_a, rows_b = paired
                results[keys[-1]] = _examples(per_seed, stats.paired_difference(SEGMENTS[metric][1], rows_a, rows_b,
                                                                                labels, seed=seed))
                continue
        if paired and metric in glue_metrics.CONFUSION:   # together with the other pairs on these examples
            batches.setdefault((metric, id(paired[0])), []).append((keys[-1], paired))
        elif paired and metric in glue_metrics.FAST:      # no confusion counts (correlations): the per-resample loop
            labels, preds_a, preds_b = paired
            results[keys[-1]] = _examples(per_seed, stats.paired_difference(glue_metrics.FAST[metric], preds_a,
                                                                            preds_b, labels, seed=seed))
        else:
            results[keys[-1]] = seed_evidence(per_seed)
    for (metric, _), batch in batches.items():
        for start in range(0, len(batch), BATCH_PAIRS):
            _paired_batch(metric, batch[start:start + BATCH_PAIRS], seed)
    return [results[key] for key in keys]


def _paired_batch(metric: str, batch: list[tuple], seed: int) -> None:
    """The paired tests of `batch`, (key, (labels, A's predictions, B's)) on one evaluation set, into the results."""
    runs, index = {}, []
    for _, (_, preds_a, preds_b) in batch:   # each run once (its predictions are one object per report)
        at = [runs.setdefault(id(p), (len(runs), p))[0] for p in preds_a + preds_b]
        index.append((at[:len(preds_a)], at[len(preds_a):]))
    labels = batch[0][1][0]
    found = stats.paired_differences(glue_metrics.FAST[metric], glue_metrics.CONFUSION[metric],
                                     [p for _, p in runs.values()], index, labels, seed=seed)
    for (key, _), result in zip(batch, found):
        _SEEN["results"][key] = _examples(list(key[3]), result)


def _examples(per_seed: list[float], result: dict) -> dict:
    """The row of a comparison on examples: the seeds it paired, and the paired test's difference, interval and p."""
    found = seed_evidence(per_seed, interval=False)
    return {**found, **{k: result[k] for k in ("diff", "low", "high", "p_value", "examples")}, "evidence": "examples"}


def seed_evidence(per_seed: list[float], interval: bool = True) -> dict:
    """A − B from its per-seed differences: their mean, and with two or more seeds the Student t interval and the
    exact sign-flip p (the `seeds` evidence; `interval=False` leaves them to a stronger test)."""
    found = {"diff": float(np.mean(per_seed)) if per_seed else math.nan, "low": math.nan, "high": math.nan,
             "p_value": math.nan, "seeds": len(per_seed), "examples": None,
             "evidence": "unpaired" if not per_seed else "one seed" if len(per_seed) == 1 else "seeds"}
    if interval and len(per_seed) > 1:
        bounds = stats.seed_interval(per_seed)
        found.update(low=bounds["low"], high=bounds["high"], p_value=stats.sign_flip_p(per_seed))
    return found


def _paired_predictions(sources_a: list[str], sources_b: list[str], read: Callable | None = None):
    """(labels, [A's predictions per seed], [B's per seed]) when every run kept predictions on the same examples
    (`read`: a run's (ids, labels, predictions) from its run.json's path, or None)."""
    loaded = [(read or _rows)(str(s)) for s in sources_a + sources_b]
    if not loaded or any(r is None for r in loaded) or len({r[0] for r in loaded}) != 1:
        return None
    if any(r[1] is not loaded[0][1] and not np.array_equal(r[1], loaded[0][1]) for r in loaded):
        return None
    half = len(sources_a)
    return loaded[0][1], [r[2] for r in loaded[:half]], [r[2] for r in loaded[half:]]


def bold_marks(values: list[list], tested: list, cell_runs) -> tuple[set, set]:
    """(cells (row, column) to mark bold, the kinds of evidence used): per column of `values` (rows × columns, None
    where a row has no value) its best value, and every value not significantly worse than it. `tested[j]`: the
    column's (task, metric) when its cells can be compared, else None (only the best is bold); `cell_runs(i, task)`:
    the runs behind row i's cell. Every comparison of the table is made at once (compare_many)."""
    marks, tests = set(), []
    for j, test in enumerate(tested):
        column = [(i, v[j]) for i, v in enumerate(values) if v[j] is not None]
        if not column:
            continue
        best_i, best = max(column, key=lambda iv: iv[1])
        for i, v in column:
            if v == best or i == best_i:
                marks.add((i, j))
            elif test is not None:
                tests.append(((i, j), (cell_runs(i, test[0]), cell_runs(best_i, test[0]), test[1])))
    results = compare_many([pair for _, pair in tests])
    marks |= {at for (at, _), result in zip(tests, results) if not_worse(result)}
    return marks, {result["evidence"] for result in results}


def not_worse(result: dict) -> bool:
    """Tested and not significantly worse than the cell it was compared with. A cell that could not be tested (one
    seed and no per-example predictions, or no seed in common) is not: bold would claim a parity nothing showed (an
    untrained row's NIST of 0.81 beside FT's 7.61 is not "not significantly worse")."""
    if result["evidence"] in UNTESTED:
        return False
    return not (result["p_value"] < LEVEL and result["diff"] < 0)


def describe(evidence: set[str]) -> str:
    """The sentence a table's notes carry about the test its bold marks rest on."""
    parts = {"examples": "a paired approximate-randomization test over evaluation examples (seeds paired, 1000 "
                         "resamples)",
             "seeds": "an exact paired sign-flip permutation test over seeds (with n seeds the smallest p is 2/2^n)",
             "one seed": "no test (one seed, no per-example predictions)",
             "unpaired": "no test (no seed in common)"}
    used = [parts[e] for e in ("examples", "seeds") if e in evidence]
    untested = [parts[e] for e in UNTESTED if e in evidence]
    text = "Bold: the best value in its column"
    if used:
        text += f" and every value not significantly worse than it (two-sided p < {LEVEL:g}) by " + "; or ".join(used)
    if untested:
        text += "; values that could not be tested against it are not bold: " + "; ".join(untested)
    return text + "."
