"""From runs to rows: which LoRA runs are compared, and every measurement as a plain row (one per matrix).

Two LoRA runs are compared when their configurations are the same but for the rank and the seed (the run's identity,
harness/results.py run_id, with `seed` and `method.r` left out): at one seed, each pair of ranks (the paper's Figure 3:
r = 8 against r = 64); at one rank, each pair of seeds (Figure 4). A configuration is labelled by its method, targets
and the settings that differ from the other configurations of that method in the analysis.
"""
from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field

from harness import results
from harness.analyze import linalg
from harness.analyze.runs import Run, delta_matrices, lora_matrices
from harness.train.config import NOT_IDENTITY


def _without_seed_and_rank(run: Run) -> dict:
    """The run's config less its seed (and the training subset's seed when it follows the seed, the default
    `trainer.subset_seed: ${seed}`), less the LoRA rank, and less where its data was read from (`task.data_dir`)."""
    config = copy.deepcopy(run.record["config"])
    (config.get("task") or {}).pop("data_dir", None)
    trainer = config.get("trainer") or {}
    if trainer.get("subset_seed") == config.get("seed"):
        trainer.pop("subset_seed", None)
    config["seed"] = None
    (config.get("method") or {}).pop("r", None)
    return config


def config_key(run: Run) -> str:
    """The run's identity without its seed and LoRA rank: runs that differ only there are compared."""
    return results.run_id(_without_seed_and_rank(run))


def _settings(run: Run) -> dict:
    """The method and trainer settings that change what a run computes (its rank aside), flattened, as JSON text."""
    config = _without_seed_and_rank(run)
    ignored = {*(f"method.{k}" for k in results.DISPLAY_KEYS["method"]), *(f"trainer.{k}" for k in NOT_IDENTITY)}
    flat = results.flatten({group: config.get(group) or {} for group in ("method", "trainer")})
    return {k: json.dumps(v, sort_keys=True, default=str) for k, v in flat.items() if k not in ignored}


def config_labels(runs: list[Run]) -> dict[str, str]:
    """config_key → 'lora {q,v}', plus `key=value` for each method or trainer setting that differs between
    configurations of the same method (and the model and task first when the analysis holds several)."""
    first = {}
    for run in runs:
        first.setdefault(config_key(run), run)
    labels = {}
    for key, run in first.items():
        peers = [_settings(r) for r in first.values() if r.record["method"] == run.record["method"]]
        mine = _settings(run)
        differ = sorted(k for k in set().union(*peers) if len({p.get(k) for p in peers}) > 1 and k in mine)
        targets = run.record["config"]["method"].get("targets")
        parts = [run.record["method"]] + (["{" + ",".join(map(str, targets)) + "}"] if targets else [])
        parts += [f"{k.rsplit('.', 1)[-1]}={json.loads(mine[k])}" for k in differ if not k.startswith("method.targets")]
        for name in ("model", "task"):
            if len({r.record[name] for r in first.values()}) > 1:
                parts.insert(0, run.record[name])
        labels[key] = " ".join(parts)
    return labels


@dataclass
class Pair:
    comparison: str                # "r=8 vs r=64" | "seeds, r=8"
    runs: str                      # "seed 0" | "seed 0 vs 1"
    a: Run
    b: Run


def pairs(runs: list[Run]) -> list[Pair]:
    """Rank pairs at each seed and seed pairs at each rank, within each configuration (LoRA runs only)."""
    groups = {}
    for run in sorted((r for r in runs if r.kind == "lora"), key=lambda r: (r.r, r.seed, str(r.folder))):
        groups.setdefault(config_key(run), {}).setdefault((run.r, run.seed), run)   # a repeated run counts once
    out = []
    for group in groups.values():
        for (ra, sa), (rb, sb) in itertools.combinations(sorted(group), 2):
            if sa == sb and ra != rb:
                out.append(Pair(f"r={ra} vs r={rb}", f"seed {sa}", group[(ra, sa)], group[(rb, sb)]))
            elif ra == rb and sa != sb:
                out.append(Pair(f"seeds, r={ra}", f"seed {sa} vs {sb}", group[(ra, sa)], group[(rb, sb)]))
    return out


@dataclass
class Measures:
    similarity: list = field(default_factory=list)      # one row per pair and matrix
    maps: dict = field(default_factory=dict)            # (configuration, comparison, runs) → {(layer, type): φ}
    amplification: list = field(default_factory=list)   # one row per LoRA run and matrix (Table 7)
    spectra: list = field(default_factory=list)         # one row per full-FT run and matrix
    curves: dict = field(default_factory=dict)          # configuration → {(layer, type): [singular values per seed]}


def similarity_row(phi, d: int, window) -> dict:
    """φ(1,1), φ(m,m) and the mean of φ(i,i) for i ≤ m = the smaller rank, the mean over the heat map's window, and
    what independent random subspaces give (linalg.random_similarity)."""
    m = min(phi.shape)
    rows, cols = (min(phi.shape[0], window[0]), min(phi.shape[1], window[1])) if window else phi.shape
    return {"d_in": d, "phi_11": float(phi[0, 0]), "phi_mm": float(phi[m - 1, m - 1]),
            "phi_diag_mean": float(phi.diagonal()[:m].mean()), "phi_window_mean": float(phi[:rows, :cols].mean()),
            "random_11": linalg.random_similarity(1, 1, d),
            "random_diag_mean": sum(linalg.random_similarity(i, i, d) for i in range(1, m + 1)) / m}


def _identity(run: Run, label: str) -> dict:
    return {"configuration": label, "model": run.record["model"], "task": run.record["task"], "seed": run.seed,
            "run": str(run.folder)}


def measure(runs: list[Run], window=None) -> Measures:
    """Every measurement over `runs`: LoRA matrices are read once per run (its A kept for the pairs)."""
    labels, out, bases = config_labels(runs), Measures(), {}
    for run in runs:
        label = labels[config_key(run)]
        if run.kind == "lora":
            entries = lora_matrices(run)
            bases[str(run.folder)] = {(e["layer"], e["type"]): e["a"] for e in entries}
            for e in entries:
                found = linalg.projections(e["w0"], e["delta"], run.r)
                out.amplification.append({**_identity(run, label), "layer": e["layer"], "type": e["type"], **found})
            continue
        for e in delta_matrices(run):
            found = linalg.spectrum(e["delta"])
            curves = out.curves.setdefault(label, {}).setdefault((e["layer"], e["type"]), [])
            curves.append(found.pop("singular_values"))
            out.spectra.append({**_identity(run, label), "layer": e["layer"], "type": e["type"],
                                "shape": "×".join(map(str, e["delta"].shape)), **found})
    for pair in pairs(runs):
        label, a, b = labels[config_key(pair.a)], bases[str(pair.a.folder)], bases[str(pair.b.folder)]
        maps = out.maps.setdefault((label, pair.comparison, pair.runs), {})
        for key in sorted(set(a) & set(b), key=lambda k: (k[0] if k[0] is not None else -1, k[1])):
            maps[key] = linalg.subspace_similarity(a[key], b[key])
            out.similarity.append({"configuration": label, "comparison": pair.comparison, "runs": pair.runs,
                                   "layer": key[0], "type": key[1], "run_a": str(pair.a.folder),
                                   "run_b": str(pair.b.folder), **similarity_row(maps[key], a[key].shape[1], window)})
    return out
