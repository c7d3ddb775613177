"""E2E NLG Challenge metrics, equal to the official scorer (tuetschek/e2e-metrics, ``measure_scores.py``).

The official scorer reports five corpus-level scores:

* BLEU and NIST from the NIST ``mteval-v13a`` Perl script (the scorer's ``-sig`` variant, which allows a varying
  number of references per segment). Both are re-implemented here from the script's definitions:
  - its tokenisation (``tokenization`` sub: SGML entities, ASCII lower-casing, punctuation split off),
  - BLEU (Papineni et al., 2002): 4-gram clipped precisions over the corpus, geometric mean, brevity penalty
    ``exp(min(0, 1 - r/c))`` with ``r`` the sum over segments of the reference length closest to the hypothesis
    length (ties -> the shorter one), and mteval's smoothing when an n-gram order has no match at all;
  - NIST (Doddington, 2002): ``sum_{n=1..5} sum_{matched n-grams} Info(w1..wn) / #hyp n-grams`` with
    ``Info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn))`` counted over all references, times the length penalty
    ``exp(-beta * log(ratio)^2)``, ``beta = -log(0.5)/log(1.5)^2``, ratio = hyp words / average reference words.
* METEOR 1.5, ROUGE-L and CIDEr(-D) from the MS-COCO caption code (the ``pycocoevalcap`` package, the same code the
  official scorer bundles), after its Stanford PTB tokenizer (lower-cased, punctuation tokens removed).

``score_e2e`` returns the scores on the official scale (BLEU 0..1, NIST about 0..15, METEOR/ROUGE-L 0..1, CIDEr 0..10);
the scorer prints them with 4 decimals.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np

from harness.errors import DataError

BLEU_N = 4
NIST_N = 5

# Perl's \s on character strings; Python's \s also matches \x1c-\x1f, which Perl does not.
_PERL_WS = r"[\t\n\x0b\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# mteval-v13a: [\{-\~\[-\` -\&\(-\+\:-\@\/] i.e. { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
_MTEVAL_PUNCT = re.compile(r"([{-~\[-` -&(-+:-@/])")


def mteval_tokenize(text: str) -> list[str]:
    """Tokens of one segment as mteval-v13a sees them (default, case-insensitive tokenisation)."""
    t = re.sub(_PERL_WS, " ", text)  # mteval joins all whitespace of a <doc> before reading its <seg>s
    t = t.replace("<skipped>", "")
    # SGML entities, in the script's order (each a global substitution of its own)
    t = t.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    t = f" {t} ".translate(_ASCII_LOWER)  # tr/[A-Z]/[a-z]/: ASCII letters only
    t = _MTEVAL_PUNCT.sub(r" \1 ", t)
    t = re.sub(r"([^0-9])([.,])", r"\1 \2 ", t)  # period/comma not preceded by a digit
    t = re.sub(r"([.,])([^0-9])", r" \1 \2", t)  # period/comma not followed by a digit
    t = re.sub(r"([0-9])(-)", r"\1 \2 ", t)  # dash preceded by a digit
    t = re.sub(_PERL_WS, " ", t).strip(" ")
    return t.split(" ") if t else []


def _ngrams(words: list[str], max_n: int) -> Counter:
    """The n-grams of orders 1..max_n (mteval collects orders up to 9; BLEU reads 4, NIST 5, and an n-gram's NIST
    information depends only on orders up to its own)."""
    return Counter(tuple(words[i:i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1))


def _ngram_info(ref_ngram_sets: list[Counter], total_ref_words: int) -> dict:
    """NIST information weights from all references (mteval's compute_ngram_info)."""
    counts: Counter = Counter()
    for ngrams in ref_ngram_sets:
        counts.update(ngrams)
    info = {}
    for ngram, c in counts.items():
        prefix = ngram[:-1]
        # Perl tests the prefix string for truth: "" (unigram) and the single word "0" are false -> total words.
        denom = counts[prefix] if prefix and prefix != ("0",) else total_ref_words
        info[ngram] = -math.log(c / denom) / math.log(2)
    return info


def _closest_length(current: int, ref_len: int, hyp_len: int) -> int:
    """mteval's brevity_penalty_closest: the closer length wins, ties go to the shorter; empty refs are skipped."""
    if not ref_len:
        return current
    d_new, d_cur = abs(hyp_len - ref_len), abs(hyp_len - current)
    if d_new < d_cur or (d_new == d_cur and current > ref_len):
        return ref_len
    return current


def _nist_length_penalty(ratio: float) -> float:
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    beta = -math.log(0.5) / math.log(1.5) / math.log(1.5)  # penalty 0.5 at ratio 1/1.5
    return math.exp(-beta * math.log(ratio) * math.log(ratio))


def bleu_from_counts(match, hyp_count, ref_length) -> float:
    """mteval's bleu_score from corpus sums (orders 1..4: clipped matches, hypothesis n-grams; the effective reference
    length), smoothing on: a zero-match order halves the count it pretends to have."""
    log_sum, smooth = 0.0, 1
    for n in range(BLEU_N):
        if hyp_count[n] == 0:
            continue  # iscore = 0
        if match[n] == 0:
            smooth *= 2
            log_sum += math.log(1 / (smooth * hyp_count[n]))
        else:
            log_sum += math.log(match[n] / hyp_count[n])
    bp = math.exp(min(0.0, 1 - ref_length / hyp_count[0])) if hyp_count[0] > 0 else 0.0
    return math.exp(log_sum / BLEU_N) * bp


def bleu_counts(hypothesis: str, references: list[str]) -> list[float]:
    """One segment's BLEU sums: clipped matches of orders 1..4, its n-gram counts of orders 1..4, and its closest
    reference length; summed over segments they give the corpus BLEU (`bleu_from_counts`)."""
    hyp = mteval_tokenize(hypothesis)
    refs = [mteval_tokenize(r) for r in references]
    max_ref: Counter = Counter()
    for r in refs:
        max_ref |= _ngrams(r, BLEU_N)
    matches = [0] * BLEU_N
    for ngram, c in _ngrams(hyp, BLEU_N).items():
        matches[len(ngram) - 1] += min(c, max_ref.get(ngram, 0))
    seg_len = len(refs[0])
    for r in refs[1:]:
        seg_len = _closest_length(seg_len, len(r), len(hyp))
    return matches + [max(len(hyp) - n + 1, 0) for n in range(1, BLEU_N + 1)] + [seg_len]


def bleu_interval(hypotheses: list[str], references: list[list[str]], seed: int = 0) -> dict:
    """The corpus BLEU's 95 % percentile-bootstrap interval over segments (MRs): each resample sums the segments'
    counts and recomputes BLEU exactly as mteval does (harness/stats.py)."""
    from harness.stats import bootstrap_interval

    counts = np.array([bleu_counts(h, rs) for h, rs in zip(hypotheses, references)], dtype=float)

    def bleu(idx):
        return corpus_bleu_of_rows(counts[idx])

    return {"metric": "bleu", "value": bleu(np.arange(len(counts))), **bootstrap_interval(bleu, len(counts), seed=seed)}


def corpus_bleu_of_rows(counts) -> float:
    """Corpus BLEU of the segments whose `bleu_counts` rows `counts` holds, summed over them as mteval does."""
    total = counts.sum(axis=0)
    return bleu_from_counts(total[:BLEU_N], total[BLEU_N:2 * BLEU_N], total[-1])


def mteval_bleu_nist(hypotheses: list[str], references: list[list[str]]) -> tuple[float, float]:
    """Corpus BLEU (4-gram, closest ref length, mteval smoothing) and NIST (5-gram) as mteval-v13a-sig computes them:
    each segment's sums (`bleu_counts`, `nist_rows`) added over the corpus."""
    if not any(mteval_tokenize(r) for rs in references for r in rs):
        raise ValueError("all references are empty: NIST is undefined (mteval divides by the reference length)")
    bleu = corpus_bleu_of_rows(np.array([bleu_counts(h, rs) for h, rs in zip(hypotheses, references)], dtype=float))
    return bleu, corpus_nist_of_rows(nist_rows(hypotheses, references))


def nist_rows(hypotheses: list[str], references: list[list[str]]) -> np.ndarray:
    """Each segment's NIST sums (one row per segment): the information of its clipped n-gram matches (orders 1..5),
    its n-gram counts (1..5), its references' words and its non-empty references. The information weights come from
    every reference of the evaluation set (mteval's compute_ngram_info), so rows of runs on the same references add
    up, over any subset of segments, as mteval's corpus sums do (`corpus_nist_of_rows`)."""
    hyps = [mteval_tokenize(h) for h in hypotheses]
    refs = [[mteval_tokenize(r) for r in rs] for rs in references]
    ref_ngrams = [[_ngrams(r, NIST_N) for r in rs] for rs in refs]
    info = _ngram_info([c for cs in ref_ngrams for c in cs], sum(len(r) for rs in refs for r in rs))
    rows = []
    for hyp, rs, rngrams in zip(hyps, refs, ref_ngrams):
        max_ref: Counter = Counter()
        for c in rngrams:
            max_ref |= c  # union keeps the maximum count of each n-gram over the references
        gained = [0.0] * NIST_N
        for ngram, c in _ngrams(hyp, NIST_N).items():
            if ngram in max_ref:
                gained[len(ngram) - 1] += info[ngram] * min(c, max_ref[ngram])
        rows.append(gained + [max(len(hyp) - n + 1, 0) for n in range(1, NIST_N + 1)]
                    + [sum(len(r) for r in rs), sum(1 for r in rs if r)])
    return np.array(rows, dtype=float).reshape(len(rows), 2 * NIST_N + 2)


def corpus_nist_of_rows(rows: np.ndarray) -> float:
    """mteval's NIST from `nist_rows` summed: Σ_n information / n-gram count (orders 1..5), times the length penalty
    of the hypothesis length over the average reference length (reference words over non-empty references per
    segment)."""
    total = rows.sum(axis=0)
    gained, counts, ref_words, refs = total[:NIST_N], total[NIST_N:2 * NIST_N], total[-2], total[-1]
    ratio = counts[0] / (ref_words / (refs / len(rows)))
    return float(sum(gained[n] / max(counts[n], 1) for n in range(NIST_N)) * _nist_length_penalty(ratio))


def _coco_jar_dir() -> Path:
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    return Path(ptb.__file__).parent


def ptb_tokenize(texts: list[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1 jar, -preserveLines -lowerCase, punctuation dropped).

    Same command and post-processing as ``pycocoevalcap.tokenizer.ptbtokenizer.PTBTokenizer``, but the input file goes
    to a private temporary folder instead of the package folder (which may be read-only).
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, STANFORD_CORENLP_3_4_1_JAR

    if not texts:
        return []
    jar = _coco_jar_dir() / STANFORD_CORENLP_3_4_1_JAR
    with tempfile.TemporaryDirectory(prefix="e2e-ptb-") as tmp:
        path = Path(tmp) / "sentences.txt"
        path.write_bytes("\n".join(t.replace("\n", " ") for t in texts).encode("utf-8"))
        cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
               str(path)]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout.decode("utf-8")
    lines = out.split("\n")
    if len(lines) < len(texts):
        raise RuntimeError(f"PTB tokenizer returned {len(lines)} lines for {len(texts)} sentences")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in lines[:len(texts)]]


def coco_inputs(hypotheses: list[str], references: list[list[str]]) -> tuple[dict, dict]:
    """(references, hypotheses) keyed by the scorer's image ids, PTB-tokenised as the official scorer does."""
    flat_refs = ptb_tokenize([r for rs in references for r in rs])
    flat_hyps = ptb_tokenize(hypotheses)  # the scorer tokenises references and outputs in two separate runs
    gts, res, k = {}, {}, 0
    for i, rs in enumerate(references):
        key = f"inst-{i}"  # the scorer's image ids, in the same insertion order
        gts[key] = flat_refs[k:k + len(rs)]
        res[key] = [flat_hyps[i]]
        k += len(rs)
    return gts, res


def coco_scores(hypotheses: list[str], references: list[list[str]], meteor: bool = True) -> dict[str, float]:
    """METEOR 1.5, ROUGE-L and CIDEr-D over PTB-tokenised texts, as the official scorer's COCOEvalCap run.

    ``meteor=False`` skips METEOR (its Java process needs several seconds to load the paraphrase table).
    """
    from pycocoevalcap.meteor.meteor import Meteor

    gts, res = coco_inputs(hypotheses, references)
    scores = {}
    if meteor:
        scorer = Meteor()  # starts METEOR's Java process; Meteor.__del__ stops it
        try:
            scores["meteor"] = float(scorer.compute_score(gts, res)[0])
        except Exception:
            scorer.meteor_p.kill()
            scorer.lock = threading.Lock()  # compute_score failed holding its lock, which __del__ would wait for
            raise
    return {**scores, **{metric: float(rows.mean()) for metric, rows in segment_scores_of(gts, res).items()}}


def segment_scores_of(gts: dict, res: dict) -> dict[str, np.ndarray]:
    """ROUGE-L and CIDEr-D of each segment of `coco_inputs` (what a paired test over segments resamples); the scorer's
    corpus figure is their mean over segments. METEOR pools its statistics instead: `meteor_rows_of`."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    return {"rouge_l": np.asarray(Rouge().compute_score(gts, res)[1], dtype=float),  # LCS F, beta = 1.2 (Lin, 2004)
            # CIDEr-D (Vedantam et al., 2015), x10; its n-gram document frequencies come from all the references
            "cider": np.asarray(Cider().compute_score(gts, res)[1], dtype=float)}


# METEOR 1.5 (Denkowski & Lavie, WMT 2014) as the official scorer runs it (`-l en -norm`, the default task): its
# parameters for English, alpha (precision / recall balance), beta and gamma (fragmentation penalty), delta (content
# against function words), and the weights of its four matchers (exact, stem, synonym, paraphrase).
METEOR_ALPHA, METEOR_BETA, METEOR_GAMMA, METEOR_DELTA = 0.85, 0.20, 0.60, 0.75
METEOR_WEIGHTS = np.array([1.0, 0.6, 0.8, 0.6])
# A segment's sufficient statistics, as the jar prints them: test and reference length, their function words, per
# matcher (test content, reference content, test function, reference function matches), chunks, test and reference
# word matches.
METEOR_STATS = 23
_METEOR = {}   # one METEOR process per Python process, started on first use: loading its paraphrase table takes ~10 s


def meteor_scorer():
    """This process's METEOR jar (pycocoevalcap's Meteor, as the official scorer runs it), started on first use."""
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = _METEOR.get("scorer")
    if scorer is None or scorer.meteor_p.poll() is not None:
        scorer = _METEOR["scorer"] = Meteor()
    return scorer


def meteor_rows_of(gts: dict, res: dict) -> np.ndarray:
    """Each segment's METEOR statistics (a row of METEOR_STATS; the jar keeps its best-scoring reference's), from the
    official scorer's METEOR jar on `coco_inputs`. `corpus_meteor_of_rows` of all rows is the scorer's METEOR."""
    scorer, rows = meteor_scorer(), []
    with scorer.lock:
        try:
            for key in gts:
                line = scorer._stat(res[key][0], gts[key])   # the jar's SCORE line: one segment against its references
                row = [float(v) for v in line.split()]
                if len(row) != METEOR_STATS:
                    raise RuntimeError(f"METEOR returned {line!r} for segment {key}: expected {METEOR_STATS} numbers")
                rows.append(row)
        except Exception:
            scorer.meteor_p.kill()   # out of step with its input: the next call starts a new process
            raise
    return np.asarray(rows, dtype=float).reshape(len(rows), METEOR_STATS)


def corpus_meteor_of_rows(rows) -> float:
    """METEOR over the segments of `rows` as the jar aggregates them (edu.cmu.meteor MeteorStats.addStats, then
    MeteorScorer.computeMetrics): statistics summed over segments, except that a segment matched whole in one chunk adds
    no chunk; then, with lengths and matches weighted delta for content words and 1 - delta for function words (and the
    matchers' weights), P = test matches / test length, R = reference matches / reference length,
    Fmean = 1 / ((1 - alpha) / P + alpha / R), fragmentation = chunks / mean word matches (0 for a whole match),
    score = Fmean (1 - gamma fragmentation^beta), 0 when undefined or negative."""
    rows = np.asarray(rows, dtype=float).reshape(-1, METEOR_STATS)
    matches = rows[:, 4:20].reshape(len(rows), 4, 4)
    whole = ((matches[:, :, [0, 2]].sum(axis=(1, 2)) == rows[:, 0])
             & (matches[:, :, [1, 3]].sum(axis=(1, 2)) == rows[:, 1]) & (rows[:, 20] == 1))
    total = rows.sum(axis=0)
    total[20] -= rows[whole, 20].sum()
    return _meteor_score(total)


def _meteor_score(s: np.ndarray) -> float:
    m, d, w = s[4:20].reshape(4, 4), METEOR_DELTA, METEOR_WEIGHTS
    with np.errstate(divide="ignore", invalid="ignore"):   # the jar's doubles: x/0 is inf or NaN, a NaN score is 0
        precision = (d * m[:, 0] @ w + (1 - d) * m[:, 2] @ w) / (d * (s[0] - s[2]) + (1 - d) * s[2])
        recall = (d * m[:, 1] @ w + (1 - d) * m[:, 3] @ w) / (d * (s[1] - s[3]) + (1 - d) * s[3])
        fmean = 1.0 / ((1 - METEOR_ALPHA) / precision + METEOR_ALPHA / recall)
        whole = m[:, [0, 2]].sum() == s[0] and m[:, [1, 3]].sum() == s[1] and s[20] == 1
        fragmentation = np.float64(0.0) if whole else s[20] / ((s[21] + s[22]) / 2)
        score = fmean * (1.0 - METEOR_GAMMA * fragmentation ** METEOR_BETA)
    return 0.0 if math.isnan(score) else max(float(score), 0.0)


def score_e2e(hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
    """The five official E2E scores: keys ``bleu, nist, meteor, rouge_l, cider`` (official scale)."""
    hypotheses, references = list(hypotheses), [list(rs) for rs in references]
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups: counts must match")
    if not hypotheses:
        raise ValueError("nothing to score: 0 hypotheses and 0 reference groups")
    empty = [i for i, rs in enumerate(references) if not rs]
    if empty:
        raise ValueError(f"{len(empty)} item(s) have no reference, first at index {empty[0]}")
    bleu, nist = mteval_bleu_nist(hypotheses, references)
    return {"bleu": bleu, "nist": nist, **coco_scores(hypotheses, references)}


def _read_lines(path: str | Path) -> list[str]:
    # The scorer reads with codecs.open(..., 'UTF-8'): lines split like str.splitlines(), each stripped.
    return [line.strip() for line in Path(path).read_bytes().decode("utf-8").splitlines()]


def read_system_outputs(path: str | Path) -> list[str]:
    """System outputs, one per line (an empty line is an empty output), as the official scorer reads them."""
    return _read_lines(path)


def read_references(path: str | Path) -> list[list[str]]:
    """References: one per line, the groups of one MR separated by a blank line.

    As in the official scorer, a file without any blank line is a single-reference file (one reference per MR).
    """
    lines = _read_lines(path)
    while lines and not lines[-1]:  # blank lines at the end close the last group, nothing more
        lines.pop()
    groups: list[list[str]] = [[]]
    for line_no, line in enumerate(lines, start=1):
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
        else:  # the scorer would create an MR without references here and fail later
            raise DataError(f"{path}:{line_no}: empty reference group (two blank lines in a row or a leading blank line)")
    if len(groups) == 1:
        groups = [[r] for r in groups[0]]
    return groups
