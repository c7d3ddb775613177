"""The claim scorecard: each of the paper's claims (harness/report/claims.yaml) evaluated on the runs a report reads,
with our effect A − B, its 95 % interval, the seeds and examples behind it, and a verdict.

    supported      the interval lies where the claim says (above 0, above −margin, inside ±margin)
    contradicted   the interval lies where the claim says it does not
    inconclusive   the interval straddles the boundary (too wide), or there is none (one seed, no predictions)
    not run        a side of the claim has no runs here

GLUE-style claims compare configurations on each (model, task, training size) both sides ran, on paired evidence
(harness/report/evidence.py), on the headline metric or on a learning-curve `measure` (harness/report/curves.py:
lower is better, in % of B); latency claims compare a variant with the base model in harness-bench latency JSON,
round by round (paired: the same round, a random order each round). A claim of a `family` (the LoRA family's) is
listed only in a report with a run of one of the family's methods.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from harness import stats
from harness.report import curves, evidence
from harness.report.frames import groups, mode, plain, records
from harness.report.records import zero_shot_mask
from harness.report.tables import fmt_num, scale_of

CLAIMS = Path(__file__).with_name("claims.yaml")
COLUMNS = ["claim", "source", "paper", "test", "model", "task", "train_samples", "a", "b", "ours", "low", "high",
           "seeds", "examples", "evidence", "p_value", "verdict", "why"]
GROUP = ["model", "task", "train_samples"]


@lru_cache(maxsize=2)
def _read(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def load(path: str = str(CLAIMS)) -> tuple:
    return tuple(_read(path)["claims"])


def listed(claim: dict, done: pd.DataFrame, path: str = str(CLAIMS)) -> bool:
    """Whether the report lists the claim: always, or for a claim of a family when a run of one of its methods is
    here (so the family's claims leave the paper's own reports as they were)."""
    family = claim.get("family")
    if not family:
        return True
    return not done.empty and bool(done["method"].isin(_read(path)["families"][family]).any())


def verdict(test: str, low: float, high: float, margin: float, lower: bool = False) -> tuple[str, str]:
    """(verdict, why) for an interval [low, high] of A − B under the claim's test; `lower`: lower is better (a
    measure such as steps to a loss), so the test reads on B − A."""
    if low is None or math.isnan(low):
        return "inconclusive", "no interval (one seed and no per-example predictions)"
    if lower:
        low, high = -high, -low
    floor, upper = {"superior": (0.0, None), "noninferior": (-margin, None), "equivalent": (-margin, margin)}[test]
    if low > floor and (upper is None or high < upper):
        # the interval shown is A − B, so a lower-is-better claim is supported below its bound
        side = "inside" if upper is not None else ("below" if lower else "above")
        return "supported", f"interval {side} the claim's bound"
    if high < floor or (upper is not None and low > upper):
        return "contradicted", "interval outside the claim's bound"
    return "inconclusive", "interval too wide: it straddles the claim's bound"


def _select(done: pd.DataFrame, side: dict) -> np.ndarray:
    """Which completed runs match one side's selector (see claims.yaml), as a boolean array."""
    methods = side["method"] if isinstance(side["method"], list) else [side["method"]]
    mask = done["method"].isin(methods) & ~(done[ZERO_SHOT] if ZERO_SHOT in done else zero_shot_mask(done))
    if "targets" in side:
        mask &= done["targets"] == str(side["targets"])
    if "r" in side:
        mask &= pd.to_numeric(_column(done, "config.method.r"), errors="coerce") == float(side["r"])
    if "init" in side:
        mask &= _column(done, "config.method.init").astype(str) == str(side["init"])
    budget = _column(done, "config.method.budget")
    mask &= budget.notna() if "budget" in side else budget.isna()
    return mask.to_numpy(dtype=bool)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(None, index=frame.index, dtype=object)


def _extreme(at: np.ndarray, side: dict, budgets: np.ndarray) -> np.ndarray:
    """Keep the runs (positions `at`) at the smallest / largest budget when the side asks for `min` / `max`."""
    if side.get("budget") not in ("min", "max") or not len(at):
        return at
    values = budgets[at]
    if np.isnan(values).all():
        return at[:0]
    return at[values == (np.nanmin(values) if side["budget"] == "min" else np.nanmax(values))]


def _row(claim: dict, where: dict, label_a: str, label_b: str, found: dict, metric: str) -> dict:
    factor = 1.0 if "measure" in claim else scale_of(metric)[0]   # a measure is in % already
    low, high = found["low"] * factor, found["high"] * factor
    decided, why = verdict(claim["test"], low, high, claim.get("margin", 0.0), "measure" in claim)
    return {"claim": f"{claim['id']}: {claim['claim']}", "source": claim["source"], "paper": claim["paper"],
            "test": _test_text(claim), **where, "a": label_a, "b": label_b, "ours": found["diff"] * factor,
            "low": low, "high": high, "seeds": found["seeds"], "examples": found["examples"],
            "evidence": found["evidence"], "p_value": found["p_value"], "verdict": decided, "why": why}


def _test_text(claim: dict) -> str:
    margin = claim.get("margin", 0.0)
    if "measure" in claim:   # lower is better
        return {"superior": "A < B", "noninferior": f"A ≤ B + {margin:g}", "equivalent": f"|A − B| < {margin:g}"}[
            claim["test"]] + f" ({claim['measure']['name']}, %)"
    return {"superior": "A > B", "noninferior": f"A ≥ B − {margin:g}", "equivalent": f"|A − B| < {margin:g}"}[
        claim["test"]]


def _context(variant: str) -> str:
    """A configuration's other settings: its variant label less the size, budget and targets a claim selects on, so
    that only configurations alike in everything else are compared (init=kaiming with init=kaiming)."""
    return " ".join(re.sub(r"(^|\s)(r|target_r|l_p|top|budget)=\S+|\{[^}]*\}", " ", variant).split())


def _label(runs: list[dict]) -> str:
    return " ".join(str(p) for p in (runs[0]["method"], runs[0]["variant"]) if p)


def evaluate_runs(claim: dict, done: pd.DataFrame, runs: Runs | None = None) -> list[dict]:
    """One row per (model, task, training size) and pair of configurations both sides ran; [] when none. `runs`:
    `done` read once for every claim (Runs), else read here."""
    pairs = list(_pairs(claim, done, runs or Runs(done))) if not done.empty else []
    if "measure" in claim:
        found = [curves.compare(runs_a, runs_b, claim["measure"]) for _, runs_a, runs_b, _ in pairs]
    else:   # all of the claim's comparisons at once (evidence.compare_many)
        found = evidence.compare_many([(runs_a, runs_b, metric) for _, runs_a, runs_b, metric in pairs])
    return [_row(claim, where, _label(runs_a), _label(runs_b), result, metric)
            for (where, runs_a, runs_b, metric), result in zip(pairs, found)]


class Runs:
    """The completed runs as the claims read them, once for every claim: columns as lists (a run's row is built only
    when a claim compares it), the (model, task, training size) groups as positions, and the budgets."""

    def __init__(self, done: pd.DataFrame):
        self.frame, self.lists = done, {}
        self.names = list(dict.fromkeys(["seed", "source", "method", "variant", *curves.CURVE, *(
            c for c in done.columns if c.startswith("metrics.best."))]))
        self.budget = pd.to_numeric(_column(done, "config.method.budget"), errors="coerce").to_numpy(dtype=float)
        # no training runs (a report of benchmarks only): no groups, and no GROUP columns to group by
        self.groups = [(key, at) for key, at in groups(done, GROUP) if not any(pd.isna(k) for k in key)] \
            if set(GROUP) <= set(done.columns) else []

    def values(self, column: str) -> list:
        if column not in self.lists:
            frame = self.frame
            self.lists[column] = frame[column].tolist() if column in frame else [None] * len(frame)
        return self.lists[column]

    def rows(self, at) -> list[dict]:
        """The runs at positions `at` as dicts of the columns a comparison reads."""
        columns = [(c, self.values(c)) for c in self.names]
        return [{c: values[i] for c, values in columns} for i in at]


def _pairs(claim: dict, done: pd.DataFrame, runs: Runs):
    """(where, A's runs, B's runs, headline metric) per (model, task, training size) and pair of configurations."""
    sides, headline = {side: _select(done, claim[side]) for side in ("a", "b")}, done["headline"].to_numpy()
    family = _column(done, "task_family").to_numpy()
    for key, at in runs.groups:
        where = dict(zip(GROUP, key))
        if claim.get("tasks") and where["task"] not in claim["tasks"]:
            continue
        if claim.get("task_family") and family[at[0]] != claim["task_family"]:
            continue
        if "train_samples" in claim["a"] and not _smallest_size(done, where):
            continue
        side_a, side_b = (_configurations(claim, runs, _extreme(at[sides[s][at]], claim[s], runs.budget))
                          for s in ("a", "b"))
        metric = mode(headline[at])
        for runs_a, sources_a, alike_a in side_a:
            for runs_b, sources_b, alike_b in side_b:
                if sources_a != sources_b and alike_a == alike_b:
                    yield where, runs_a, runs_b, metric
                # else: the same runs (one budget is `min` and `max`), or other settings differ (init …)


def _configurations(claim: dict, runs: Runs, at: np.ndarray) -> list[tuple]:
    """(runs as dicts, their sources, what must agree with the other side's) per configuration (variant) of one side
    (positions `at`), in variant order. Agree: the other settings (_context), and what the claim's `match` names, a
    report column (variant_size: LoRA's r or AdaLoRA's target_r; targets) or else a method setting (r: compared at
    equal rank)."""
    match = [key if key in runs.frame.columns else f"config.method.{key}" for key in claim.get("match", [])]
    by_variant: dict = {}
    for i in at:
        by_variant.setdefault(runs.values("variant")[i], []).append(i)
    out = []
    for variant in sorted(v for v in by_variant if not pd.isna(v)):
        first, config = by_variant[variant][0], runs.rows(by_variant[variant])
        out.append((config, {r["source"] for r in config},
                    (_context(variant), *(str(runs.values(c)[first]) for c in match))))
    return out


def _smallest_size(done: pd.DataFrame, where: dict) -> bool:
    """For a low-data claim: whether the group's training size is the smallest of two or more its (model, task) ran."""
    same = done[(done["model"] == where["model"]) & (done["task"] == where["task"])]
    sizes = set(same["train_samples"])
    numeric = sorted(float(s) for s in sizes if s != "full")
    return len(sizes) > 1 and bool(numeric) and where["train_samples"] != "full" \
        and float(where["train_samples"]) == numeric[0]


def evaluate_latency(claim: dict, benches: list[dict]) -> list[dict]:
    """Per bench file and grid cell: the variant's paired overhead over the base model (%), bootstrap over rounds."""
    rows = []
    spec = claim["latency"]
    for bench in benches:
        at = {(r["variant"], r["batch"], r["seq"]): r for r in bench["rows"]}
        for (variant, batch, seq), row in sorted(at.items()):
            base = at.get((spec["baseline"], batch, seq))
            if variant != spec["variant"] or base is None:
                continue
            ratio = np.array(row["times_ms"]) / np.array(base["times_ms"])
            interval = stats.bootstrap_interval(lambda idx: float(np.median(ratio[idx])), len(ratio))
            found = {"diff": float(np.median(ratio)) - 1, "low": interval["low"] - 1, "high": interval["high"] - 1,
                     "seeds": None, "examples": len(ratio), "evidence": "rounds", "p_value": math.nan}
            where = {"model": bench["meta"]["model"], "task": f"latency {batch}×{seq}", "train_samples": ""}
            rows.append(_row(claim, where, spec["variant"], spec["baseline"], found, "latency_pct"))
    return rows


# The runs-frame columns the claims read (their selectors, groups, labels and evidence) besides the metrics: the runs
# are narrowed to them first, so that grouping thousands of runs does not slice hundreds of other columns.
READ = {*GROUP, "task_family", "variant", "variant_size", "method", "targets", "headline", "seed", "source", "zero_shot",
        "config.trainer.epochs", "config.trainer.max_steps"}   # and every metrics.* and config.method.* column
ZERO_SHOT = "_zero_shot"   # records.zero_shot_mask of the runs, read once for every claim's selectors


def scorecard(done: pd.DataFrame, benches: list[dict] = (), path: str = str(CLAIMS)) -> pd.DataFrame:
    """Every claim's rows (a `not run` row for a claim without evidence here), in claims.yaml's order."""
    rows = []
    done = plain(done[[c for c in done.columns if c in READ or c.startswith(("metrics.", "config.method."))]])
    done = done.assign(**{ZERO_SHOT: zero_shot_mask(done)})
    runs = Runs(done)
    for claim in (c for c in load(path) if listed(c, done, path)):
        found = evaluate_latency(claim, list(benches)) if "latency" in claim else evaluate_runs(claim, done, runs)
        rows += found or [{"claim": f"{claim['id']}: {claim['claim']}", "source": claim["source"],
                           "paper": claim["paper"], "test": _test_text(claim), "verdict": "not run",
                           "why": "no runs for one of its sides in this report"}]
    return pd.DataFrame(rows, columns=COLUMNS)


def display(card: pd.DataFrame) -> pd.DataFrame:
    """The scorecard for Markdown / HTML / LaTeX, the claims evaluated here: the claim's id, the effect as
    `A − B [low, high]`, p and counts as text (each claim's words and the paper's numbers: `legend`)."""
    card = card[card["verdict"] != "not run"]
    out = pd.DataFrame({"claim": [c.split(":", 1)[0] for c in card["claim"]]}, index=card.index)
    sizes = card["train_samples"].dropna()
    shown = ["source", "test", "model", "task"] + (["train_samples"] if sizes.nunique() > 1 else []) + ["a", "b"]
    out = out.join(card[shown]).rename(columns={"train_samples": "training examples"})   # when the sizes differ
    rows = records(card, ["ours", "low", "high", "seeds", "examples"])
    out["A − B [95 % interval]"] = [_effect_text(r) for r in rows]
    out["seeds / examples"] = [_counts(r) for r in rows]
    out["p"] = ["" if pd.isna(p) else f"{p:.3f}" for p in card["p_value"]]
    out["evidence"], out["verdict"], out["why"] = card["evidence"], card["verdict"], card["why"]
    return out.astype(object).fillna("")


def _effect_text(row) -> str:
    if pd.isna(row["ours"]):
        return ""
    text = fmt_num(row["ours"], 1)
    return text if pd.isna(row["low"]) else f"{text} [{fmt_num(row['low'], 1)}, {fmt_num(row['high'], 1)}]"


def _counts(row) -> str:
    seeds = "" if pd.isna(row["seeds"]) else str(int(row["seeds"]))
    examples = "" if pd.isna(row["examples"]) else str(int(row["examples"]))
    return " / ".join(p for p in (seeds, examples) if p)


def legend(card: pd.DataFrame) -> list[str]:
    """One line per claim: its words, what the paper reports, and whether it was run here."""
    lines = []
    for claim, rows in card.groupby("claim", sort=False):
        first = rows.iloc[0]
        status = " — not run here" if (rows["verdict"] == "not run").all() else ""
        lines.append(f"{claim} ({first['source']}; paper: {first['paper']}){status}")
    return lines


def summary(card: pd.DataFrame) -> str:
    counts = card["verdict"].value_counts()
    order = ("supported", "contradicted", "inconclusive", "not run")
    return "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in order) + "."
