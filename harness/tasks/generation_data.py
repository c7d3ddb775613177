"""Text pairs for the generation tasks: what differs between E2E NLG and WikiSQL (data, prompt, target, scorer).

E2E: prompt = the linearised MR + ` ||` (the LoRA-paper data format: `name : The Eagle | Type : pub ||`), target = one
human reference; evaluation is once per distinct MR, scored against all its references. Local official CSVs under
`task.data_dir/e2e_nlg/csv/`, else the hub (`task.hub`).
WikiSQL: prompt = the table's columns + the question + `SQL:`, target = the query written out (`sql_to_text`); scored by
logical-form and execution accuracy on `{eval split}.db`. Local official files under `task.data_dir/wikisql/` only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from harness.errors import ConfigError, DataError
from harness.tasks import e2e, wikisql
from harness.tasks.glue import sha256_of


@dataclass
class GenData:
    train_pairs: list[tuple[str, str]]          # (prompt, target)
    eval_inputs: list[str]                      # the MR / question of each evaluated item, for the samples table
    eval_prompts: list[str]                     # one per evaluated item (distinct MR / question)
    eval_pairs: list[tuple[str, str]]           # every (prompt, reference) of the evaluated items: teacher-forced loss
    first_references: list[str]                 # one reference per evaluated item, for the samples table
    references_text: str                        # references.txt: harness-score's format
    score: Callable[[list[str]], dict]          # generations (one per item) → metrics
    provenance: dict = field(default_factory=dict)


def _splits(task: dict) -> tuple[str, str]:
    splits = task["splits"]
    evals = [splits["eval"]] if isinstance(splits["eval"], str) else list(splits["eval"])
    if len(evals) != 1:
        raise ConfigError(f"task.splits.eval must name one split for a generation task, got {evals}")
    return splits["train"], evals[0]


def _subset(items: list, task: dict, tcfg) -> list:
    """The first `task.max_eval_examples` items (MRs / questions) in file order (else `trainer.max_eval_samples`)."""
    n = task.get("max_eval_examples")
    n = tcfg.max_eval_samples if n is None else n
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ConfigError(f"task.max_eval_examples must be a positive integer or null, got {n!r}")
    return items if n is None else items[:n]


def _e2e_pairs(task: dict, split: str) -> tuple[list[tuple[str, str]], dict]:
    if task.get("data_dir"):
        path = e2e.find_e2e_file(task["data_dir"], split)
        return e2e.read_e2e_csv(path), {"path": str(path), "sha256": sha256_of(path)}
    import datasets

    hub = task["hub"]
    try:
        ds = datasets.load_dataset(hub["path"], split=hub["splits"][split])
    except Exception as exc:  # offline machines land here; say how to use local files instead
        raise DataError(f"could not load {hub['path']} split {hub['splits'][split]!r} from the hub "
                        f"({type(exc).__name__}); set HARNESS_DATA_DIR to a folder holding e2e_nlg/csv/") from exc
    pairs = [(str(mr or "").strip(), str(ref or "").strip()) for mr, ref in zip(ds[hub["mr"]], ds[hub["ref"]])]
    bad = [i for i, (mr, ref) in enumerate(pairs) if not mr or not ref]
    if bad:
        raise DataError(f"{hub['path']} split {split!r}: {len(bad)} row(s) with an empty MR or no reference, first row {bad[0]}")
    return pairs, {"hub": hub["path"], "fingerprint": ds._fingerprint}


def e2e_prompt(mr: str) -> str:
    return e2e.linearize_mr(mr) + " ||"


def load_e2e(task: dict, tcfg) -> GenData:
    from harness.metrics.e2e import score_e2e

    train_split, eval_split = _splits(task)
    train, train_source = _e2e_pairs(task, train_split)
    dev, dev_source = _e2e_pairs(task, eval_split)
    # One line per reference in references.txt: a reference holding a line break would shift every group after it.
    groups = _subset([(mr, [" ".join(r.split()) for r in refs]) for mr, refs in e2e.group_by_mr(dev)], task, tcfg)
    references = [refs for _, refs in groups]
    return GenData(
        train_pairs=[(e2e_prompt(mr), ref) for mr, ref in train],
        eval_inputs=[mr for mr, _ in groups],
        eval_prompts=[e2e_prompt(mr) for mr, _ in groups],
        eval_pairs=[(e2e_prompt(mr), ref) for mr, refs in groups for ref in refs],
        first_references=[refs[0] for refs in references],
        references_text="\n".join("\n".join(refs) + "\n" for refs in references),
        score=lambda outputs: score_e2e(outputs, references),
        provenance={train_split: train_source, eval_split: dev_source, "eval_items": len(groups)},
    )


def _wikisql_split(data_dir, split: str) -> tuple[list[dict], dict]:
    paths = wikisql.split_paths(data_dir, split)
    examples = wikisql.load_examples(data_dir, split)  # a question whose table is missing is a DataError naming it
    return examples, {k: {"path": str(p), "sha256": sha256_of(p)} for k, p in paths.items() if k != "db"}


def load_wikisql(task: dict, tcfg) -> GenData:
    from harness.metrics.wikisql import score_wikisql

    train_split, eval_split = _splits(task)
    data_dir = task.get("data_dir")
    db = wikisql.split_paths(data_dir, eval_split)["db"]
    if not db.is_file():  # execution accuracy needs it: fail now, not after training
        raise DataError(f"WikiSQL database not found: {db} (the official {eval_split}.db, needed for execution accuracy)")
    train, train_source = _wikisql_split(data_dir, train_split)
    dev, dev_source = _wikisql_split(data_dir, eval_split)
    dev = _subset(dev, task, tcfg)

    def pair(ex: dict) -> tuple[str, str]:
        return wikisql.build_prompt(ex["question"], ex["header"]), wikisql.sql_to_text(ex["sql"], ex["header"])

    gold = [pair(ex)[1] for ex in dev]
    return GenData(
        train_pairs=[pair(ex) for ex in train],
        eval_inputs=[ex["question"] for ex in dev],
        eval_prompts=[pair(ex)[0] for ex in dev],
        eval_pairs=[pair(ex) for ex in dev],
        first_references=gold,
        references_text="".join(q + "\n" for q in gold),
        score=lambda outputs: score_wikisql(outputs, dev, db),
        provenance={train_split: train_source, eval_split: dev_source, "eval_items": len(dev)},
    )


LOADERS = {"e2e": load_e2e, "wikisql": load_wikisql}


def missing_files(task: dict) -> list[str]:
    """Start-up check, before any model loads: the local files of every split are there (hub data is checked when it
    downloads). One message per missing file."""
    train_split, eval_split = _splits(task)
    data_dir = task.get("data_dir")
    problems = []
    if task["family"] == "e2e":
        if not data_dir:
            return []
        for split in (train_split, eval_split):
            try:
                e2e.find_e2e_file(data_dir, split)
            except DataError as exc:
                problems.append(str(exc))
        return problems
    for split in (train_split, eval_split):
        paths = wikisql.split_paths(data_dir, split)
        wanted = ("questions", "tables", "db") if split == eval_split else ("questions", "tables")
        problems += [f"WikiSQL {split} file not found: {paths[k]}" for k in wanted if not paths[k].is_file()]
    return problems


def load(task: dict, tcfg) -> GenData:
    return LOADERS[task["family"]](task, tcfg)
