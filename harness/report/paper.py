"""The LoRA paper's reported numbers (harness/report/paper_numbers.yaml) as flat entries, and our names → the
paper's names.

The YAML keeps the paper's table layout (rows × columns) so that it can be checked against the PDF by eye; `entries()`
flattens it into one dict per printed number, which is what the reproduction scorecard joins on:
    {table, model, method, method_key, notes, params, params_count, task, metric, value, std, seeds, r, targets, ...}
"""
from functools import lru_cache
from pathlib import Path

import yaml

NUMBERS = Path(__file__).with_name("paper_numbers.yaml")

# Our model config names → the paper's model labels (Tables 2 and 3). Models the paper never used map to nothing.
MODEL_NAMES = {
    "roberta-base": "RoB-base",
    "roberta-large": "RoB-large",
    "deberta-v2-xxlarge": "DeB-XXL",
    "gpt2-medium": "GPT-2 M",
    "gpt2-large": "GPT-2 L",
}

# The paper spells a method differently from table to table (Adpt^H in Table 2, Adapter^H in Table 3, AdapterH in
# Table 4), so the map goes from every printed spelling to our one method name.
METHOD_KEYS = {
    "FT": "full_ft",
    "BitFit": "bitfit",
    "LoRA": "lora",
    "Adpt^H": "adapter_h",
    "Adapter^H": "adapter_h",
    "AdapterH": "adapter_h",
    "Adpt^P": "adapter_p",
    "Adapter^L": "adapter_l",
    "Adpt^D": "adapter_d",
    "PreEmbed": "prefix_embed",
    "PreLayer": "prefix_layer",
    "FT^Top2": "ft_top2",
}

# Our methods that are the paper's method under another implementation (lora_peft is LoRA through the peft library).
SAME_AS = {"lora_peft": "lora"}

# Row-level fields copied into every entry of that row (when the row or its table has them).
_CARRIED = ("model", "method", "params", "seeds", "r", "targets")


def parse_params(text):
    """'0.3M' → 300000.0, '175,255.8M' → 1.752558e11, '25.7K' → 25700.0; None stays None."""
    if text is None:
        return None
    text = str(text).replace(",", "").strip()
    scale = {"K": 1e3, "M": 1e6, "B": 1e9}.get(text[-1:].upper())
    return float(text[:-1]) * scale if scale else float(text)


def _split_metric(column, spec, table):
    """A table's `metrics` map says which (task, metric) a column is: 'task.metric', or a bare metric name whose task
    is the table's `task` (Table 3: e2e) or else the column itself (Table 2: one column per GLUE task)."""
    if "." in spec:
        task, metric = spec.split(".", 1)
        return task, metric
    return table.get("task", column), spec


def _flatten(table):
    for row in table["rows"]:
        base = {key: row.get(key, table.get(key)) for key in _CARRIED}
        for column, value in row["values"].items():
            task, metric = _split_metric(column, table["metrics"][column], table)
            setting = table.get("settings", {}).get(column, {})
            entry = dict(base, table=table["table"], column=column, task=task, metric=metric, value=float(value))
            entry["params"] = entry["params"] or setting.get("params")
            entry["params_count"] = parse_params(entry["params"])
            entry["std"] = row.get("std", {}).get(column)
            entry["noise"] = table.get("noise", {}).get(column)
            entry["notes"] = tuple(row.get("notes", ()))
            entry["method_key"] = METHOD_KEYS.get(entry["method"])
            entry["setting"] = dict(setting) or None
            entry["overhead"] = row.get("overhead", {}).get(column)
            if entry["targets"] is not None:
                entry["targets"] = tuple(entry["targets"])
            yield entry


@lru_cache(maxsize=4)
def _load(path):
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return data, tuple(entry for table in data["tables"] for entry in _flatten(table))


def entries(path=NUMBERS):
    """Every number the paper prints, one dict each (fresh copies: callers may modify them)."""
    return [dict(entry) for entry in _load(str(path))[1]]


def legend(path=NUMBERS):
    """What the paper's row markers mean: {'*': 'numbers published in prior work…', '†': …}."""
    return dict(_load(str(path))[0]["legend"])


def lookup(task, method_key, tables=(2, 3, 4), path=NUMBERS):
    """The paper's entries for our (task, method): the main results tables by default (rank and target sweeps in
    Tables 5, 6 and 18 are GPT-3/GPT-2-only ablations, read them through `entries()`)."""
    method_key = SAME_AS.get(method_key, method_key)
    return [e for e in entries(path) if e["task"] == task and e["method_key"] == method_key and e["table"] in tables]
