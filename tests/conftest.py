"""Shared fixtures: composing the real Hydra configs, and small GLUE folders written in the official tsv layouts."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.run import CONF_DIR

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HARNESS_DATA_DIR") or REPO.parent / "shared" / "data")

POS = ["a gripping , funny film", "wonderful acting and a great story", "i loved every minute", "a delight"]
NEG = ["a dull , lifeless mess", "boring and far too long", "i hated this film", "a waste of time"]


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _write(path: Path, lines: list[str], gz: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(str(path) + ".gz", "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def write_glue_fixture(root: Path, n: int = 32) -> Path:
    """All eight GLUE tasks, `n` rows per split, in the layouts GLUE's download script produces."""
    g = root / "glue"
    pairs = [(POS[i % 4], 1) if i % 2 == 0 else (NEG[i % 4], 0) for i in range(n)]
    nli3 = ["entailment", "neutral", "contradiction"]
    for split in ("train", "dev"):
        _write(g / "SST-2" / f"{split}.tsv", ["sentence\tlabel"] + [f"{s}\t{y}" for s, y in pairs], gz=split == "train")
        _write(g / "CoLA" / f"{split}.tsv", [f"gj04\t{y}\t{'' if y else '*'}\t{s}" for s, y in pairs])
        _write(g / "MRPC" / f"{split}.tsv", ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
               + [f"{y}\t{i}\t{i + 1}\t{s}\t{s if y else 'something else'}" for i, (s, y) in enumerate(pairs)])
        _write(g / "QQP" / f"{split}.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"]
               + [f"{i}\t{2 * i}\t{2 * i + 1}\t{s} ?\t{s if y else 'what'} ?\t{y}" for i, (s, y) in enumerate(pairs)])
        for folder in ("QNLI", "RTE"):
            cols = "question\tsentence" if folder == "QNLI" else "sentence1\tsentence2"
            _write(g / folder / f"{split}.tsv", [f"index\t{cols}\tlabel"]
                   + [f"{i}\t{s}\t{s if y else 'no'}\t{'entailment' if y else 'not_entailment'}" for i, (s, y) in enumerate(pairs)])
        _write(g / "STS-B" / f"{split}.tsv",
               ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"]
               + [f"{i}\tmain-captions\tMSRvid\t2012test\t{i}\tnone\tnone\t{s}\t{s if y else 'other'}\t{5.0 * y - 0.25 * (i % 3):.3f}"
                  for i, (s, y) in enumerate(pairs)])
    mnli_train_head = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
                       "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
    _write(g / "MNLI" / "train.tsv", [mnli_train_head] + [
        f"{i}\t{i}\t{i}e\tfiction\t( a )\t( b )\t(S a)\t(S b)\t{s}\t{s}\t{nli3[i % 3]}\t{nli3[i % 3]}" for i, (s, _) in enumerate(pairs)])
    dev_head = mnli_train_head.replace("\tlabel1\tgold_label", "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label")
    for split in ("dev_matched", "dev_mismatched"):
        _write(g / "MNLI" / f"{split}.tsv", [dev_head] + [
            f"{i}\t{i}\t{i}e\tfiction\t( a )\t( b )\t(S a)\t(S b)\t{s}\t{s}\t{nli3[i % 3]}\t{nli3[i % 3]}\t{nli3[i % 3]}\t"
            f"{nli3[i % 3]}\t{nli3[i % 3]}\t{nli3[i % 3]}" for i, (s, _) in enumerate(pairs)])
    return root


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    return write_glue_fixture(tmp_path_factory.mktemp("data"))


@pytest.fixture
def tiny_overrides(glue_dir, tmp_path):
    """Overrides for a fast CPU run of the tiny random BERT on the fixture data."""
    return ["model=tiny-bert", "tracker=none", "trainer.progress=false", f"task.data_dir={glue_dir}",
            f"trainer.cache_dir={tmp_path / 'cache'}", "trainer.batch_size=8", "trainer.epochs=2"]


def shared_data_or_skip() -> Path:
    if not (SHARED_DATA / "glue").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set HARNESS_DATA_DIR)")
    return SHARED_DATA
