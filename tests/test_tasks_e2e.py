"""E2E data readers: CSV layouts, error messages, grouping, MR linearisation, and the real files when present."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from harness.errors import DataError

from harness.tasks.e2e import find_e2e_file, group_by_mr, linearize_mr, load_e2e_split, parse_mr, read_e2e_csv

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HARNESS_DATA_DIR") or REPO.parent / "shared" / "data")

MR1 = "name[The Eagle], eatType[coffee shop], priceRange[£20-25], familyFriendly[yes]"
MR2 = "name[Alimentum], area[city centre]"
CSV = ("mr,ref\n"
       f'"{MR1}","The Eagle, a coffee shop, costs £20-25."\n'
       f'"{MR2}",Alimentum is in the city centre.\n'
       f'"{MR1}","A ""family"" place:\nThe Eagle."\n')  # quoted comma, quotes and a newline inside a field


def test_read_plain_and_gzip(tmp_path):
    plain = tmp_path / "devset.csv"
    plain.write_text(CSV, encoding="utf-8")
    packed = tmp_path / "trainset.csv.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as fh:
        fh.write("\ufeff" + CSV)  # a byte-order mark is tolerated
    expected = [(MR1, "The Eagle, a coffee shop, costs £20-25."), (MR2, "Alimentum is in the city centre."),
                (MR1, 'A "family" place:\nThe Eagle.')]
    assert read_e2e_csv(plain) == expected
    assert read_e2e_csv(packed) == expected
    # grouping keeps the order of first appearance, even when an MR comes back later
    assert group_by_mr(expected) == [(MR1, [expected[0][1], expected[2][1]]), (MR2, [expected[1][1]])]


def test_missing_columns_message(tmp_path):
    path = tmp_path / "testset.csv"
    path.write_text(f'MR\n"{MR2}"\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_e2e_csv(path)
    message = str(err.value)
    assert str(path) in message and "['MR']" in message and "['mr', 'ref']" in message


def test_empty_references_are_counted_with_lines(tmp_path):
    path = tmp_path / "devset.csv"
    path.write_text(f'mr,ref\n"{MR1}",ok\n"{MR2}",\n"{MR2}"\n,orphan\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"devset\.csv: 3 row\(s\) with an empty MR or no reference, at line\(s\) 3, 4, 5"):
        read_e2e_csv(path)


def test_linearize_mr():
    assert parse_mr(MR2) == [("name", "Alimentum"), ("area", "city centre")]
    assert linearize_mr(MR1) == "name : The Eagle | Type : coffee shop | price : £20-25 | family friendly : yes"
    with pytest.raises(DataError, match="cannot parse MR"):
        linearize_mr("name: The Eagle")


def test_find_file_order_and_errors(tmp_path, monkeypatch):
    folder = tmp_path / "e2e_nlg" / "csv"
    folder.mkdir(parents=True)
    (folder / "devset.csv.gz").write_bytes(gzip.compress(CSV.encode()))
    assert find_e2e_file(tmp_path, "dev") == folder / "devset.csv.gz"
    (folder / "devset.csv").write_text(CSV, encoding="utf-8")
    assert find_e2e_file(tmp_path, "dev") == folder / "devset.csv"  # plain first
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    assert [mr for mr, _ in load_e2e_split(None, "dev")] == [MR1, MR2]
    with pytest.raises(DataError) as err:
        find_e2e_file(None, "test")
    message = str(err.value)
    assert str(folder / "testset_w_refs.csv") in message and str(folder / "testset_w_refs.csv.gz") in message
    assert f"HARNESS_DATA_DIR={str(tmp_path)!r}" in message
    with pytest.raises(ValueError, match="unknown E2E split"):
        find_e2e_file(tmp_path, "validation")


@pytest.fixture
def real_data() -> Path:
    if not (SHARED_DATA / "e2e_nlg" / "csv" / "devset.csv").is_file():
        pytest.skip(f"real E2E data not found under {SHARED_DATA} (set HARNESS_DATA_DIR)")
    return SHARED_DATA


def test_real_dev_and_train(real_data):
    # counts from the data folder's SOURCE.md (= the official release)
    dev = read_e2e_csv(find_e2e_file(real_data, "dev"))
    assert len(dev) == 4672 and len(group_by_mr(dev)) == 547
    train = read_e2e_csv(find_e2e_file(real_data, "train"))  # trainset.csv.gz
    assert len(train) == 42061 and len(group_by_mr(train)) == 4862
    # the MR side of the LoRA-format valid.txt is our linearisation with values tokenised (spaces aside, equal)
    lora = (real_data / "e2e_nlg" / "lora_format" / "valid.txt").read_text(encoding="utf-8").splitlines()
    assert len(lora) == len(dev)
    for (mr, _), line in zip(dev, lora):
        assert linearize_mr(mr).replace(" ", "") == line.split("||")[0].replace(" ", "")


def test_real_testset_without_references_is_rejected(real_data):
    with pytest.raises(DataError, match="testset_w_refs"):
        read_e2e_csv(real_data / "e2e_nlg" / "csv" / "testset.csv")


def test_real_test_mrs_are_read_as_mrs_without_references(real_data):
    """Only where asked (an evaluation split): the released testset.csv, 630 distinct MRs (SOURCE.md), no references."""
    path = find_e2e_file(real_data, "test", mrs_only=True)
    assert path.name == "testset.csv"
    pairs = read_e2e_csv(path, mrs_only=True)
    assert len(pairs) == 630 and len(group_by_mr(pairs)) == 630 and {ref for _, ref in pairs} == {None}
    assert pairs[0][0].startswith("name[")
