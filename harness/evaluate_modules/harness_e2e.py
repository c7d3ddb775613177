"""lora-harness's E2E NLG metrics (harness/metrics/e2e.py) as a 🤗 evaluate module: BLEU, NIST, METEOR, ROUGE-L and
CIDEr equal to the official e2e-metrics scorer (mteval-v13a BLEU / NIST, the MS-COCO caption code for the rest; METEOR
and the PTB tokenizer need Java)."""
import datasets
import evaluate

from harness.metrics.e2e import score_e2e

_CITATION = """Dušek, Novikova and Rieser 2020, Evaluating the state-of-the-art of End-to-End Natural Language
Generation: The E2E NLG challenge"""
_KWARGS_DESCRIPTION = """
Args:
    predictions: one system output per meaning representation (MR).
    references: the references of each MR (a list of strings per prediction).
Returns: {"bleu", "nist", "meteor", "rouge_l", "cider"} on the official scale (BLEU 0..1, CIDEr 0..10).
"""


class HarnessE2e(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        return score_e2e(predictions, references)
