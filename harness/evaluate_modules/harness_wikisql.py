"""lora-harness's WikiSQL metrics (harness/metrics/wikisql.py) as a 🤗 evaluate module: logical-form accuracy (the
LoRA paper's Table 4 number) and execution accuracy, as the official evaluator computes them, from the official
release's files: each reference is its question's index in `{split}.jsonl`, whose gold query, table (`.tables.jsonl`)
and database (`.db`) are read from `data_dir` (default: $HARNESS_DATA_DIR)."""
import datasets
import evaluate

from harness.metrics.wikisql import score_wikisql
from harness.tasks.wikisql import load_examples, split_paths

_CITATION = """Zhong, Xiong and Socher 2017, Seq2SQL: Generating Structured Queries from Natural Language using
Reinforcement Learning"""
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted query texts (`SELECT COUNT(Player) FROM table WHERE No. = 3`).
    references: each prediction's question index in {split}.jsonl.
    data_dir: the folder holding wikisql/ (default: $HARNESS_DATA_DIR); split: dev (default), test or train.
Returns: logical_form_acc, execution_acc (0..1), n, parse_failures, exec_failures, gold_exec_failures.
"""


class HarnessWikisql(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, data_dir=None, split="dev"):
        examples = load_examples(data_dir, split)
        return score_wikisql(predictions, [examples[i] for i in references], split_paths(data_dir, split)["db"])
