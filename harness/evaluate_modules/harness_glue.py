"""lora-harness's GLUE metrics (harness/metrics/glue.py) as a 🤗 evaluate module: the task's own metrics (its yaml's
`metrics`: accuracy, F1 of class 1 for MRPC / QQP, Matthews correlation for CoLA, Pearson and Spearman for STS-B),
as the run record holds them (0.912, not 91.2)."""
import datasets
import evaluate

from harness import catalog
from harness.metrics import glue

_CITATION = """Wang et al. 2018, GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding"""
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label ids (a float score for stsb).
    references: gold label ids (a float score for stsb).
Returns: {metric: value} for the task's metrics.
Example:
    >>> metric = evaluate.load(harness.evaluate_modules.module_path("glue"), "mrpc")
    >>> metric.compute(predictions=[1, 0, 1, 1], references=[1, 0, 0, 1])
    {'accuracy': 0.75, 'f1': 0.8}
"""


def _glue_task(name):
    task = catalog.task_meta(name) if name else {}
    if task.get("dataset") != "glue":
        tasks = sorted(n for n in catalog.task_names() if catalog.task_meta(n).get("dataset") == "glue")
        raise KeyError(f"config {name!r} is not a GLUE task; valid choices: {', '.join(tasks)}")
    return task


class HarnessGlue(evaluate.Metric):
    def _info(self):
        kind = "float32" if _glue_task(self.config_name).get("labels") is None else "int64"
        return evaluate.MetricInfo(
            description=__doc__, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value(kind), "references": datasets.Value(kind)}))

    def _compute(self, predictions, references):
        return glue.compute(_glue_task(self.config_name)["metrics"], predictions, references)
