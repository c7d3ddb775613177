"""The paper's numbers as data: the loader, the name maps, and transcription checks against the paper's own sums."""
import pytest

from harness.report import paper


def test_every_table_is_loaded():
    entries = paper.entries()
    per_table = {t: sum(e["table"] == t for e in entries) for t in (1, 2, 3, 4, 5, 6, 18)}
    # rows × columns: 3×3, 14×(8 tasks + Avg), 12×5, 8×5, 7×2, 15×2, 3×1
    assert per_table == {1: 9, 2: 126, 3: 60, 4: 40, 5: 14, 6: 30, 18: 3}


def test_spot_values_with_std_notes_and_params():
    (lora,) = [e for e in paper.lookup("sst2", "lora") if e["model"] == "RoB-base"]
    assert (lora["value"], lora["std"], lora["params"], lora["metric"], lora["notes"]) == (95.1, 0.2, "0.3M",
                                                                                         "accuracy", ())
    ft = [e for e in paper.lookup("cola", "full_ft") if e["model"] == "DeB-XXL"][0]
    assert (ft["value"], ft["std"], ft["notes"], ft["params_count"]) == (72.0, None, ("*",), 1.5e9)
    houlsby = [e for e in paper.lookup("rte", "adapter_h") if e["params"] == "6.0M"][0]
    assert (houlsby["value"], houlsby["std"], houlsby["notes"]) == (83.4, 1.1, ("†",))
    nist = [e for e in paper.lookup("e2e", "lora") if e["model"] == "GPT-2 L" and e["metric"] == "nist"][0]
    assert (nist["value"], nist["std"], nist["seeds"]) == (8.89, 0.02, 3)
    wikisql = [e for e in paper.lookup("wikisql", "lora") if e["params"] == "37.7M"][0]
    assert (wikisql["model"], wikisql["metric"], wikisql["value"], wikisql["noise"]) == ("GPT-3",
                                                                                         "logical_form_acc", 74.0, 0.5)
    sweep = [e for e in paper.entries() if e["table"] == 6 and e["task"] == "mnli" and e["targets"] == ("q", "v")]
    assert [(e["r"], e["value"]) for e in sweep] == [(1, 91.3), (2, 91.4), (4, 91.3), (8, 91.6), (64, 91.4)]
    assert "prior work" in paper.legend()["*"]


def test_table2_avg_column_matches_the_tasks():
    """The printed Avg is the mean of the eight printed tasks: a check on every transcribed Table 2 number."""
    rows = {}
    for e in paper.entries():
        if e["table"] == 2:
            rows.setdefault((e["model"], e["method"], e["params"], e["notes"]), {})[e["task"]] = e["value"]
    assert len(rows) == 14
    for key, values in rows.items():
        avg = values.pop("avg")
        assert sum(values.values()) / 8 == pytest.approx(avg, abs=0.051), key


def test_name_maps():
    assert paper.MODEL_NAMES["roberta-base"] == "RoB-base" and paper.MODEL_NAMES["gpt2-medium"] == "GPT-2 M"
    printed = {e["method"] for e in paper.entries() if e["table"] in (2, 3, 4)}
    assert all(paper.METHOD_KEYS.get(m) for m in printed), printed - set(paper.METHOD_KEYS)
    assert {paper.METHOD_KEYS[m] for m in ("Adpt^H", "Adapter^H", "AdapterH")} == {"adapter_h"}
    assert paper.lookup("sst2", "lora_peft") == paper.lookup("sst2", "lora")


@pytest.mark.parametrize("text, count", [("0.3M", 3e5), ("175,255.8M", 1.752558e11), ("25.7K", 25_700), ("18M", 1.8e7),
                                         (None, None)])
def test_parse_params(text, count):
    assert paper.parse_params(text) == (pytest.approx(count) if count else None)
