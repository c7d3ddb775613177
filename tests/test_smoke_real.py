"""Real-model smoke tests: the embedded MiniLM on the real SST-2 files in ../shared/data (slow: loads the model)."""
import pytest

from harness.runner import run
from tests.conftest import compose_cfg, shared_data_or_skip

# all-MiniLM-L6-v2: 6 layers, d = 384, FFN 1536. BitFit's biases: embeddings LayerNorm 384 + per layer
# (q, k, v, o 4·384 + attention LayerNorm 384 + intermediate 1536 + output 384 + output LayerNorm 384) = 384 + 6·4224.
MINILM_BIASES = 384 + 6 * (4 * 384 + 384 + 1536 + 384 + 384)
MINILM_TOTAL = 22_713_986  # BertForSequenceClassification with 2 labels


@pytest.mark.slow
@pytest.mark.parametrize("method,trainable_no_head", [("bitfit", MINILM_BIASES), ("lora", 2 * 12 * 384 * 8)])
def test_minilm_real_sst2_counts(method, trainable_no_head, tmp_path):
    data = shared_data_or_skip()
    cfg = compose_cfg("model=minilm", "task=glue/sst2", f"method={method}", f"task.data_dir={data}", "tracker=none",
                      "trainer.progress=false", "trainer.max_train_samples=64", "trainer.max_steps=2",
                      "trainer.max_eval_samples=64", f"trainer.cache_dir={tmp_path / 'cache'}")
    record = run(cfg, tmp_path)
    assert record["status"] == "completed"
    params = record["params"]
    assert params["trainable_no_head"] == trainable_no_head
    if method == "bitfit":
        assert params["total"] == MINILM_TOTAL
        assert params["trainable_no_head"] / params["total"] < 0.002  # the foundation issue's BitFit bound
    else:
        assert params["total"] == MINILM_TOTAL + trainable_no_head
    assert record["provenance"]["data"]["train"]["sha256"].startswith("1c4843303462")  # SST-2/train.tsv.gz
