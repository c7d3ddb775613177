"""`task`: one validated TaskConfig, built from the task yaml at start-up (before any data or model loads).

A task is data plus the few functions that must be code (the lm-evaluation-harness idea). The yaml says everything
else: which pipeline trains it (`kind`), which module reads, prompts and scores it (`dataset`), the splits, metrics and
headline, the prompt template of a generation task, its decoding settings, and how reports lay it out. Keys the core
does not know belong to the dataset module, which lists them in `OPTIONS` (GLUE: glue_dir, tsv, hub).

    kind: classification   harness/tasks/classification.py: a task head on an encoder (or a decoder), GLUE metrics
    kind: generation       harness/tasks/generation.py: prompt → target on a causal LM, decoded and scored
    dataset: glue          harness/tasks/glue.py; a dotted path (`mypackage.mydata`) names a module of your own
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import string
from dataclasses import dataclass, field

from harness.errors import ConfigError, unknown_choice

log = logging.getLogger("harness")
KINDS = ("classification", "generation")
BUILTIN_DATASETS = ("glue", "e2e", "wikisql")


def _int(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass
class GenerationConfig:
    """`task.generation`: decoding settings (defaults: the paper's, Table 11)."""

    num_beams: int = 10
    length_penalty: float = 0.9
    no_repeat_ngram_size: int = 4
    max_new_tokens: int = 64
    batch_size: int = 16

    def __post_init__(self):
        for key, low in (("num_beams", 1), ("max_new_tokens", 1), ("batch_size", 1), ("no_repeat_ngram_size", 0)):
            if not _int(getattr(self, key), low):
                raise ConfigError(f"task.generation.{key} must be an integer ≥ {low}, got {getattr(self, key)!r}")

    def hf(self, eos: int, pad: int):
        from transformers import GenerationConfig as HFGenerationConfig

        beams = dict(num_beams=self.num_beams, length_penalty=self.length_penalty) if self.num_beams > 1 else {}
        return HFGenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=eos,
                                  pad_token_id=pad, no_repeat_ngram_size=self.no_repeat_ngram_size, use_cache=True,
                                  **beams)


@dataclass
class TaskConfig:
    name: str
    kind: str
    dataset: str
    splits: dict                       # {train: split, eval: [split, ...]}; a generation task evaluates one split
    metrics: list
    headline: str
    label: str | None = None           # how reports print it (SST-2); the name when unset
    version: int = 1                   # bump when the data, prompt or scoring change: it is in the run's identity
    data_dir: str | None = None        # local data root (HARNESS_DATA_DIR); unset: the dataset's hub copy
    labels: list | None = None         # classification: label strings in id order; null: regression (STS-B)
    prompt: str | None = None          # generation: a template over the dataset's prompt fields ("{mr} ||")
    max_eval_examples: int | None = None   # deprecated: trainer.max_eval_samples, the one name for every task kind
    label_smoothing: float = 0.0       # generation: on the target tokens (paper, E2E: 0.1)
    eval_every_epoch: bool = False     # generation: decode every epoch (else once, after training)
    samples: int = 20                  # generation: rows of the W&B table of generations
    generation: GenerationConfig | None = None
    report: dict = field(default_factory=dict)    # the report's layout (harness/report): table, title, columns, order
    options: dict = field(default_factory=dict)   # the dataset module's own keys (its OPTIONS)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise unknown_choice("task.kind", self.kind, KINDS)
        if self.headline not in self.metrics:
            raise ConfigError(f"task.headline={self.headline!r} is not among task.metrics {list(self.metrics)}")
        evals = [self.splits.get("eval")] if isinstance(self.splits.get("eval"), str) else self.splits.get("eval")
        if not self.splits.get("train") or not evals:
            raise ConfigError(f"task.splits needs a `train` split and a non-empty `eval` list, got {self.splits!r}")
        self.splits = {"train": self.splits["train"], "eval": list(evals)}
        if self.kind == "generation":
            self._check_generation()

    def _check_generation(self):
        if len(self.splits["eval"]) != 1:
            raise ConfigError(f"task.splits.eval must name one split for a generation task, got {self.splits['eval']}")
        if self.max_eval_examples is not None and not _int(self.max_eval_examples, 1):
            raise ConfigError(f"task.max_eval_examples must be a positive integer or null, got {self.max_eval_examples!r}")
        if self.max_eval_examples is not None:
            log.warning("task.max_eval_examples is deprecated: use trainer.max_eval_samples=%d (the evaluation size "
                        "of every task kind)", self.max_eval_examples)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"task.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.prompt:
            raise ConfigError("task.prompt is missing: a generation task needs a prompt template (\"{question} SQL:\")")
        self.generation = GenerationConfig(**(self.generation or {}))

    def eval_limit(self, max_eval_samples: int | None) -> int | None:
        """How many evaluation items to score: `trainer.max_eval_samples`, or the deprecated `task.max_eval_examples`
        when only it is set (both set and different: an error naming both)."""
        old = self.max_eval_examples
        if old is not None and max_eval_samples is not None and old != max_eval_samples:
            raise ConfigError(f"trainer.max_eval_samples={max_eval_samples} and the deprecated task.max_eval_examples="
                              f"{old} disagree; set trainer.max_eval_samples only")
        return max_eval_samples if old is None else old

    @property
    def eval_split(self) -> str:
        return self.splits["eval"][0]

    def render_prompt(self, fields: dict) -> str:
        return self.prompt.format_map(fields)


def dataset_module(name: str):
    """The module behind `task.dataset`: a built-in (glue → harness.tasks.glue) or any importable dotted path."""
    path = f"harness.tasks.{name}" if name in BUILTIN_DATASETS else name
    try:
        return importlib.import_module(path)
    except ImportError as exc:
        raise ConfigError(f"task.dataset={name!r}: cannot import module {path!r} ({exc}); built-in datasets: "
                          f"{', '.join(BUILTIN_DATASETS)}, or a dotted module path on PYTHONPATH") from None


def task_config(values: dict) -> TaskConfig:
    """The `task` group as a TaskConfig: core keys checked here, the rest handed to the dataset module's OPTIONS."""
    known = {f.name for f in dataclasses.fields(TaskConfig)} - {"options"}
    for key in ("name", "kind", "dataset", "splits", "metrics", "headline"):
        if values.get(key) is None:
            raise ConfigError(f"task.{key} is missing from the task config")
    module = dataset_module(values["dataset"])
    options = {k: v for k, v in values.items() if k not in known}
    allowed = tuple(getattr(module, "OPTIONS", ()))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"task.{unknown[0]} is not a setting of task {values['name']!r} (dataset "
                          f"{values['dataset']}); valid keys: {', '.join(sorted(known | set(allowed)))}")
    task = TaskConfig(**{k: v for k, v in values.items() if k in known}, options=options)
    _check_against(module, task)
    return task


def _check_against(module, task: TaskConfig) -> None:
    """The dataset module's declared metrics and prompt fields, when it declares them."""
    metrics = getattr(module, "METRICS", None)
    unknown = [m for m in task.metrics if metrics is not None and m not in metrics]
    if unknown:
        raise ConfigError(f"task.metrics has unknown metric {unknown[0]!r}; valid choices: {', '.join(metrics)}")
    fields = getattr(module, "PROMPT_FIELDS", None)
    used = [name for _, name, _, _ in string.Formatter().parse(task.prompt or "") if name]
    missing = [name for name in used if fields is not None and name not in fields]
    if missing:
        raise ConfigError(f"task.prompt uses {{{missing[0]}}}, which dataset {task.dataset} does not give; "
                          f"prompt fields: {', '.join(fields)}")
    if hasattr(module, "check_options"):
        module.check_options(task)
