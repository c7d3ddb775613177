"""Synthetic task data in the official layouts, for benchmarks that need no real data (gpu-check, tests): SST-2
(`glue/SST-2/{train,dev}.tsv`: sentence, label) and E2E (`e2e_nlg/csv/{trainset,devset}.csv`: mr, ref), seeded.
The words are drawn so that sentences have the length spread of real ones (SST-2: 4–40 words; E2E references: 8–30),
which is what throughput and padding depend on; the labels are a function of the words, so there is something to learn."""
from __future__ import annotations

import csv
import random
from pathlib import Path

GOOD = "good great fine wonderful lovely superb moving charming clever bright".split()
BAD = "bad dull boring awful weak tedious flat lifeless clumsy poor".split()
FILLER = ("the a film movie story acting plot scene cast and but with of it is was very quite rather too its "
          "this that director music pace ending script").split()
FIELDS = {"name": ["The Eagle", "Alimentum", "Zizzi", "The Mill", "Aromi", "Cotto"],
          "eatType": ["pub", "restaurant", "coffee shop"], "food": ["French", "Italian", "Indian", "English"],
          "priceRange": ["cheap", "moderate", "high"], "area": ["riverside", "city centre"]}


def sentence(rng: random.Random, lo: int, hi: int) -> tuple[str, int]:
    """A sentence of lo–hi words and its label: 1 when it holds more GOOD words than BAD ones."""
    words = [rng.choice(FILLER) for _ in range(rng.randint(lo, hi))]
    label = rng.random() < 0.5
    for i in rng.sample(range(len(words)), k=max(1, len(words) // 6)):
        words[i] = rng.choice(GOOD if label else BAD)
    return " ".join(words), int(label)


def write_sst2(root: Path, n_train: int, n_dev: int, seed: int = 0, words: tuple[int, int] = (4, 40)) -> None:
    rng = random.Random(seed)
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [sentence(rng, *words) for _ in range(n)]
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows),
                                             encoding="utf-8")


def write_e2e(root: Path, n_train: int, n_dev: int, seed: int = 0) -> None:
    """E2E rows: an MR of 3–5 fields (`name[The Eagle], food[French]`) and a reference sentence naming them."""
    rng = random.Random(seed)
    folder = root / "e2e_nlg" / "csv"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("trainset", n_train), ("devset", n_dev)):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["mr", "ref"])
            for _ in range(n):
                keys = ["name", *rng.sample(sorted(FIELDS)[1:], k=rng.randint(2, 4))]
                values = {k: rng.choice(FIELDS[k]) for k in keys}
                mr = ", ".join(f"{k}[{v}]" for k, v in values.items())
                ref = " ".join([values["name"], "is a", *(values[k] for k in keys[1:]),
                                *(rng.choice(FILLER) for _ in range(rng.randint(3, 20)))]) + " ."
                writer.writerow([mr, ref])


def write_data(root: str | Path, n_train: int = 512, n_dev: int = 64, seed: int = 0,
               words: tuple[int, int] = (4, 40)) -> Path:
    """Both tasks under `root` (a HARNESS_DATA_DIR / task.data_dir), SST-2 sentences of `words` words; returns it."""
    root = Path(root)
    write_sst2(root, n_train, n_dev, seed, words)
    write_e2e(root, n_train, n_dev, seed)
    return root


# --- E2E without Java: this module is also a generation dataset (`task=e2e task.dataset=harness.bench.synthetic
# task.metrics=[bleu]`). It reads the E2E files as harness/tasks/e2e.py does (the same prompts and references) and
# scores BLEU alone, with the harness's mteval re-implementation (pure Python); E2E's METEOR, ROUGE-L and CIDEr run
# Java, which a GPU machine for gpu-check need not have.
PROMPT_FIELDS = ("mr",)
METRICS = ("bleu",)
OPTIONS = ("hub",)


def read(task, split: str):
    from harness.tasks import e2e

    return e2e.read(task, split)


def eval_items(task, examples):
    from harness.tasks import e2e

    return e2e.eval_items(task, examples)


def score(task, outputs: list[str], items) -> dict:
    from harness.metrics.e2e import mteval_bleu_nist

    return {"bleu": mteval_bleu_nist(outputs, [item.references for item in items])[0]}
