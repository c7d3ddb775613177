"""E2E metrics: hand-computed BLEU/NIST/ROUGE-L/CIDEr cases, edge cases, file readers, and the official scorer's figures."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from harness.errors import DataError

from harness.metrics import e2e
from harness.metrics.e2e import (coco_inputs, coco_scores, corpus_meteor_of_rows, meteor_rows_of, mteval_bleu_nist,
                                 mteval_tokenize, ptb_tokenize, read_references, read_system_outputs, score_e2e)
from harness.score import main as score_main

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HARNESS_DATA_DIR") or REPO.parent / "shared" / "data")
OFFICIAL = SHARED_DATA.parent / "reference" / "e2e_official_scores"
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java not found (PTB tokenizer and METEOR jars)")

# Figures printed by the official scorer (reference folder README.md): BLEU, NIST, METEOR, ROUGE_L, CIDEr.
OFFICIAL_SCORES = {
    "dev20.firstref": (0.5694, 7.0159, 0.4283, 0.6349, 1.4611),
    "dev547.firstref": (0.5995, 8.5789, 0.4498, 0.6528, 1.8543),
    "dev547.halfref": (0.3076, 1.1555, 0.2560, 0.4851, 0.4554),
}
NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2  # mteval's length-penalty constant


def test_mteval_tokenization():
    # lower-cased (ASCII), & ! , split off; '.' split unless between digits; '-' split after a digit; &amp; -> &
    assert mteval_tokenize("Hello, World! It's £20-25. 3.5 & x&amp;y") == [
        "hello", ",", "world", "!", "it's", "£20", "-", "25", ".", "3.5", "&", "x", "&", "y"]
    assert mteval_tokenize("  \n ") == []


def test_bleu_nist_single_reference_by_hand():
    # hyp "the cat sat on the mat", ref "the cat sat on a mat" (6 words each, BP = 1)
    # clipped precisions: 1-gram 5/6 (one "the" clipped), 2-gram 3/5, 3-gram 2/4, 4-gram 1/3
    # BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** 0.25 = 0.537285
    # NIST info from the reference: every unigram occurs once in 6 words -> log2(6); every longer n-gram follows its
    # prefix every time -> log2(1/1) = 0. NIST = 5 matched unigrams * log2(6) / 6 hyp unigrams = 2.154156
    bleu, nist = mteval_bleu_nist(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert bleu == pytest.approx((1 / 12) ** 0.25, abs=1e-12)
    assert nist == pytest.approx(5 * math.log2(6) / 6, abs=1e-12)


def test_brevity_penalties_by_hand():
    # hyp "the cat" (c = 2) vs ref "the cat sat on the mat" (r = 6): precisions 2/2 and 1/1; orders 3 and 4 have no
    # hypothesis n-gram, which mteval scores as log 1 = 0 (still dividing by 4). BLEU = exp(1 - 6/2) = e^-2.
    # NIST: info(the) = log2(6/2), info(cat) = log2(6/1), info("the cat") = log2(count(the)/count(the cat)) = log2(2/1)
    # -> (log2 3 + log2 6)/2 + 1/1 = 3.084963; ratio 2/6 -> penalty exp(-beta * ln(1/3)^2) = 0.006166 -> 0.019022
    bleu, nist = mteval_bleu_nist(["the cat"], [["the cat sat on the mat"]])
    assert bleu == pytest.approx(math.exp(-2), abs=1e-12)
    expected_nist = ((math.log2(3) + math.log2(6)) / 2 + 1) * math.exp(-NIST_BETA * math.log(1 / 3) ** 2)
    assert nist == pytest.approx(expected_nist, abs=1e-12)
    assert nist == pytest.approx(0.019022, abs=1e-6)


def test_bleu_closest_reference_length_and_ties():
    # c = 2, refs of 3 and 6 words: closest r = 3 -> BP = exp(1 - 3/2); precisions 2/2, 1/1 -> BLEU = exp(-0.5)
    assert mteval_bleu_nist(["a b"], [["a b c", "a b c d e f"]])[0] == pytest.approx(math.exp(-0.5), abs=1e-12)
    # c = 3, refs of 2 and 4 words are equally close: the shorter (2) wins -> no penalty, all precisions 1 -> 1.0
    assert mteval_bleu_nist(["a b c"], [["a b c d", "a b"]])[0] == pytest.approx(1.0, abs=1e-12)


def test_bleu_smoothing_when_an_order_has_no_match():
    # hyp "x y z w" vs ref "x q r s t": 1-gram 1/4; 2-, 3-, 4-gram no match -> mteval smoothing 1/(2*3), 1/(4*2),
    # 1/(8*1); BP: c = 4, r = 5 -> exp(1 - 5/4). BLEU = (1/4 * 1/6 * 1/8 * 1/8) ** 0.25 * exp(-0.25) = 0.124452
    bleu, _ = mteval_bleu_nist(["x y z w"], [["x q r s t"]])
    assert bleu == pytest.approx((1 / 1536) ** 0.25 * math.exp(-0.25), abs=1e-12)


def test_empty_hypotheses():
    # an empty output adds its closest (= shortest non-empty) reference length to r: c = 6, r = 6 + 3 -> exp(-0.5)
    bleu, _ = mteval_bleu_nist(["the cat sat on the mat", ""], [["the cat sat on the mat"], ["a b c"]])
    assert bleu == pytest.approx(math.exp(-0.5), abs=1e-12)
    assert mteval_bleu_nist(["", ""], [["a b"], ["c d"]]) == (0.0, 0.0)


def test_nist_uses_average_number_of_nonempty_references():
    # ref words: 2 + 4 + 3 = 9 over 3 non-empty refs in 2 segments -> average 1.5 refs/segment
    # -> reference length = 9 / 1.5 = 6; hyp words 3 -> ratio 0.5 (with one extra empty ref the ratio must not change)
    refs = [["a b", "a b c d"], ["e f g"]]
    hyps = ["a b", "e"]
    nist = mteval_bleu_nist(hyps, refs)[1]
    assert mteval_bleu_nist(hyps, [refs[0], refs[1] + [""]])[1] == pytest.approx(nist, abs=1e-12)
    # info: a and b occur 2 times in 9 words -> log2(9/2) each; e once -> log2(9); "a b" follows "a" both times -> 0
    # NIST1 = (2 log2 4.5 + log2 9) / 3 hyp unigrams, NIST2 = 0 / 1; times the penalty at ratio 3/6 = 0.5
    expected = (2 * math.log2(4.5) + math.log2(9)) / 3 * math.exp(-NIST_BETA * math.log(0.5) ** 2)
    assert nist == pytest.approx(expected, abs=1e-12)


def test_count_mismatch_and_missing_references():
    with pytest.raises(ValueError, match=r"3 hypotheses but 2 reference groups"):
        score_e2e(["a", "b", "c"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="no reference"):
        score_e2e(["a"], [[]])


@needs_java
def test_ptb_tokenizer_and_rouge_cider_by_hand():
    assert ptb_tokenize(["The Eagle, a pub.", "", "Isn't it?"]) == ["the eagle a pub", "", "is n't it"]
    # ROUGE-L (beta 1.2): hyp "the cat sat" vs ref "the cat was sitting": LCS 2, P = 2/3, R = 2/4
    # F = (1 + 1.44) P R / (R + 1.44 P) = 0.813333 / 1.46 = 0.557078; an exact copy scores 1; the corpus score is the mean
    p, r = 2 / 3, 2 / 4
    rouge_1 = (1 + 1.2 ** 2) * p * r / (r + 1.2 ** 2 * p)
    s = coco_scores(["the cat sat", "a dog runs very fast"], [["the cat was sitting"], ["a dog runs very fast"]],
                    meteor=False)
    assert s["rouge_l"] == pytest.approx((rouge_1 + 1.0) / 2, abs=1e-12)
    # CIDEr-D, IDF over the references of the corpus (N = 2 items): in two exact copies of references that share no
    # word, every n-gram has df = 1 -> idf = log(2/1); hyp and ref vectors are equal -> cosine 1 for n = 1..4, no
    # length gap -> each item 10 * mean(1, 1, 1, 1) = 10
    exact = coco_scores(["a dog runs very fast", "the cat was sitting"], [["a dog runs very fast"], ["the cat was sitting"]],
                        meteor=False)
    assert exact == {"rouge_l": pytest.approx(1.0), "cider": pytest.approx(10.0)}
    # one item: every reference n-gram has df = 1 = number of items -> idf = log(1) - log(1) = 0 -> CIDEr 0
    assert coco_scores(["a dog runs"], [["a dog runs"]], meteor=False)["cider"] == 0.0


# METEOR statistics rows: test / reference length, function words, per matcher (exact, stem, synonym, paraphrase) the
# test content, reference content, test function, reference function matches, chunks, test / reference word matches.
WHOLE = [3, 3, 0, 0, 3, 3, 0, 0] + [0] * 12 + [1, 3, 3]       # matched whole, in one chunk
PARTIAL = [4, 5, 1, 1, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0] + [0] * 4 + [2, 3, 3]   # 2 exact + 1 synonym match, 2 chunks


def test_meteor_pools_segment_statistics_by_hand():
    """METEOR 1.5 over two segments (alpha 0.85, beta 0.2, gamma 0.6, delta 0.75; matcher weights 1, 0.6, 0.8, 0.6):
    statistics summed, except the whole match's chunk (the jar's MeteorStats.addStats)."""
    test_len, ref_len = 0.75 * (7 - 1) + 0.25 * 1, 0.75 * (8 - 1) + 0.25 * 1            # content 0.75, function 0.25
    test_matched = ref_matched = 0.75 * (5 * 1.0 + 1 * 0.8)                              # 5 exact + 1 synonym content
    precision, recall = test_matched / test_len, ref_matched / ref_len
    fmean = 1 / (0.15 / precision + 0.85 / recall)
    expected = fmean * (1 - 0.6 * (2 / 6) ** 0.2)                           # 2 chunks over (6 + 6) / 2 word matches
    assert corpus_meteor_of_rows([WHOLE, PARTIAL]) == pytest.approx(expected, rel=1e-12)
    assert corpus_meteor_of_rows([WHOLE]) == pytest.approx(1 / (0.15 + 0.85), rel=1e-12)   # no fragmentation penalty
    assert corpus_meteor_of_rows([[0] * 23]) == 0.0                                     # an empty segment: undefined → 0


@needs_java
def test_meteor_statistics_match_the_jar():
    """The jar scores the same rows alike (its EVAL line), and each MR's statistics pooled give the official scorer's
    METEOR on its reference cases (4 decimals, as it prints) and the jar's own corpus figure (to 1e-12)."""
    scorer = e2e.meteor_scorer()
    with scorer.lock:
        line = " ||| ".join(["EVAL", *(" ".join(f"{v:.1f}" for v in row) for row in (WHOLE, PARTIAL))])
        scorer.meteor_p.stdin.write(f"{line}\n".encode())
        scorer.meteor_p.stdin.flush()
        jar = [float(scorer.meteor_p.stdout.readline()) for _ in range(3)]   # each segment's score, then the corpus's
    assert corpus_meteor_of_rows([WHOLE, PARTIAL]) == pytest.approx(jar[2], abs=1e-12)
    assert corpus_meteor_of_rows([PARTIAL]) == pytest.approx(jar[1], abs=1e-12)
    for name in ("dev20.firstref", "dev547.halfref"):
        gts, res = coco_inputs(*_official_case(name))
        rows = meteor_rows_of(gts, res)
        assert rows.shape == (len(gts), 23)
        assert f"{corpus_meteor_of_rows(rows):.4f}" == f"{OFFICIAL_SCORES[name][2]:.4f}"
        assert corpus_meteor_of_rows(rows) == pytest.approx(scorer.compute_score(gts, res)[0], abs=1e-12)


def test_reference_and_output_readers(tmp_path):
    refs = tmp_path / "refs.txt"
    refs.write_text("A one.\nA two.\n\nB one.\n\n\n", encoding="utf-8")  # trailing blank lines are fine
    assert read_references(refs) == [["A one.", "A two."], ["B one."]]
    single = tmp_path / "single.txt"
    single.write_text("A.\nB.\nC.\n", encoding="utf-8")  # no blank line: single-reference file, as the scorer reads it
    assert read_references(single) == [["A."], ["B."], ["C."]]
    bad = tmp_path / "bad.txt"
    bad.write_text("A.\n\n\nB.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.txt:3: empty reference group"):
        read_references(bad)
    outs = tmp_path / "outs.txt"
    outs.write_text(" first \n\nthird\n", encoding="utf-8")  # an empty line is an empty output
    assert read_system_outputs(outs) == ["first", "", "third"]


def _official_case(name: str):
    if not OFFICIAL.is_dir():
        pytest.skip(f"official reference scores not found at {OFFICIAL} (set HARNESS_DATA_DIR)")
    refs = read_references(OFFICIAL / f"{name.split('.')[0]}.refs.txt")
    return read_system_outputs(OFFICIAL / f"{name}.sys.txt"), refs


def _assert_official(scores: dict, name: str):
    bleu, nist, meteor, rouge_l, cider = OFFICIAL_SCORES[name]
    got = {k: f"{v:.4f}" for k, v in scores.items()}
    assert got["bleu"] == f"{bleu:.4f}" and got["meteor"] == f"{meteor:.4f}"
    assert got["rouge_l"] == f"{rouge_l:.4f}" and got["cider"] == f"{cider:.4f}"
    assert abs(scores["nist"] - nist) <= 0.0005


@pytest.mark.parametrize("name", ["dev547.firstref", "dev547.halfref"])
def test_official_bleu_nist_547(name):  # BLEU/NIST only: fast, no Java
    hyps, refs = _official_case(name)
    bleu, nist = mteval_bleu_nist(hyps, refs)
    assert f"{bleu:.4f}" == f"{OFFICIAL_SCORES[name][0]:.4f}"
    assert f"{nist:.4f}" == f"{OFFICIAL_SCORES[name][1]:.4f}"  # the Perl figure exactly, not only within 0.0005


@needs_java
def test_official_dev20_all_metrics_via_cli(capsys):
    hyps, refs = _official_case("dev20.firstref")
    assert score_main(["e2e", str(OFFICIAL / "dev20.firstref.sys.txt"), str(OFFICIAL / "dev20.refs.txt"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    _assert_official(scores, "dev20.firstref")
    assert len(hyps) == len(refs) == 20


@pytest.mark.slow
@needs_java
@pytest.mark.parametrize("name", ["dev547.firstref", "dev547.halfref"])
def test_official_dev547_all_metrics(name):  # about 15 s each on 2 cores (METEOR's Java start-up)
    hyps, refs = _official_case(name)
    _assert_official(score_e2e(hyps, refs), name)


def test_cli_errors(tmp_path, capsys):
    assert score_main(["e2e", str(tmp_path / "missing.txt"), str(tmp_path / "refs.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"harness-score: error: file not found: {tmp_path / 'missing.txt'}"
    (tmp_path / "o.txt").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("a\n\nb\n\nc\n", encoding="utf-8")
    assert score_main(["e2e", str(tmp_path / "o.txt"), str(tmp_path / "r.txt")]) == 2
    assert "2 hypotheses but 3 reference groups" in capsys.readouterr().err
