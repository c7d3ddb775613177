"""harness-analyze: the paper's subspace similarity φ (§7.2 eq. 4) against hand-computed values, Table 7's projections
and amplification against their closed forms, the rank-r energy against Eckart–Young, and tiny LoRA / full FT runs
measured end to end (numbers recomputed from the saved files independently, with numpy)."""
import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.numpy import load_file

from harness import analyze, report
from harness.analyze import linalg
from harness.results import run_id
from harness.runner import run
from tests.conftest import compose_cfg


def rotation(theta):
    return torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)


def test_phi_is_one_for_identical_subspaces():
    a = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(linalg.subspace_similarity(a, a), torch.ones(4, 4, dtype=torch.float64), atol=1e-12)
    mixed = torch.randn(4, 4, generator=torch.Generator().manual_seed(1)) @ a   # the same row space, other vectors
    assert linalg.subspace_similarity(a, mixed)[3, 3] == pytest.approx(1.0, abs=1e-12)


def test_phi_matches_a_hand_computed_2x2_case():
    # A₁ = diag(2, 1): right-singular vectors e₁ (σ = 2), e₂. A₂ = diag(3, 1)·R(30°)ᵀ: right-singular vectors are R's
    # columns, (cos 30°, sin 30°) first. φ(1,1) = cos² 30° = 0.75; φ(1,2) = φ(2,1) = φ(2,2) = 1 (all of ℝ²).
    a1 = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))
    a2 = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ rotation(math.pi / 6).T
    phi = linalg.subspace_similarity(a1, a2)
    assert phi.flatten().tolist() == pytest.approx([0.75, 1.0, 1.0, 1.0], abs=1e-12)
    # the order of singular values matters: diag(1, 3) puts e₂ first, orthogonal to A₁'s top direction
    assert linalg.subspace_similarity(a1, torch.diag(torch.tensor([1.0, 3.0])))[0, 0] == pytest.approx(0.0, abs=1e-12)


def test_phi_is_symmetric_and_within_zero_and_one():
    gen = torch.Generator().manual_seed(2)
    a1, a2 = torch.randn(3, 12, generator=gen), torch.randn(7, 12, generator=gen)
    phi, back = linalg.subspace_similarity(a1, a2), linalg.subspace_similarity(a2, a1)
    assert phi.shape == (3, 7) and torch.allclose(phi, back.T, atol=1e-12)
    assert float(phi.min()) >= 0.0 and float(phi.max()) <= 1.0 + 1e-12


def test_random_baseline_is_the_expected_phi_of_random_subspaces():
    gen = torch.Generator().manual_seed(3)
    draws = [float(linalg.subspace_similarity(torch.randn(2, 10, generator=gen), torch.randn(3, 10, generator=gen))[1, 2])
             for _ in range(3000)]
    assert np.mean(draws) == pytest.approx(linalg.random_similarity(2, 3, 10), abs=0.01)   # max(2, 3)/10 = 0.3


def orthogonal(n, seed):
    return torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]


def test_amplification_on_a_constructed_w_and_delta_equals_its_closed_form():
    # W = P diag(s) Qᵀ; ΔW = 4·p₃q₃ᵀ + 3·p₄q₄ᵀ acts on W's 3rd and 4th directions: UᵀWV = diag(s₃, s₄), so
    # ‖UᵀWVᵀ‖_F = √(s₃² + s₄²) = √(4 + 1), amplification = ‖ΔW‖_F / that = 5 / √5 = √5; W's own top 2: √(10² + 5²).
    p, q, s = orthogonal(6, 4), orthogonal(5, 5), torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    w = p[:, :5] @ torch.diag(s) @ q.T
    delta = 4 * torch.outer(p[:, 2], q[:, 2]) + 3 * torch.outer(p[:, 3], q[:, 3])
    found = linalg.projections(w, delta, r=2)
    assert found["delta_norm"] == pytest.approx(5.0) and found["proj_delta"] == pytest.approx(math.sqrt(5.0))
    assert found["amplification"] == pytest.approx(math.sqrt(5.0))
    assert found["proj_w"] == pytest.approx(math.sqrt(125.0)) and found["w_norm"] == pytest.approx(float(s.norm()))
    one = linalg.projections(w, 2 * torch.outer(p[:, 4], q[:, 4]), r=1)   # rank 1 on the weakest direction: 2 / 0.5
    assert one["amplification"] == pytest.approx(4.0)


def test_random_projection_averages_to_its_expectation():
    # E‖UᵀWV‖²_F = r²·‖W‖²_F / (d·k) for independent uniformly random r-dimensional U ⊂ ℝ^d, V ⊂ ℝ^k.
    w = torch.randn(6, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    squares = [linalg.projections(w, w, r=2, seed=seed)["proj_random"] ** 2 for seed in range(600)]
    assert np.mean(squares) == pytest.approx(4 * float(w.norm()) ** 2 / 30, rel=0.1)


def test_rank_r_energy_is_the_eckart_young_value():
    m = np.random.default_rng(7).standard_normal((12, 9))
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    for r in range(1, 10):
        best = (u[:, :r] * s[:r]) @ vt[:r]
        error = np.linalg.norm(m - best) ** 2
        assert error == pytest.approx(float(np.sum(s[r:] ** 2)), abs=1e-9)            # ‖M − M_r‖² = Σ_{k>r} σ_k²
        assert linalg.energy_fraction(torch.from_numpy(s), r) == pytest.approx(1 - error / np.linalg.norm(m) ** 2)
        other = m @ np.linalg.qr(np.random.default_rng(r).standard_normal((9, r)))[0]  # some other rank-r matrix
        projected = other @ np.linalg.pinv(other) @ m
        assert np.linalg.norm(m - projected) ** 2 >= error - 1e-9                   # the truncated SVD is the best
    found = linalg.spectrum(torch.from_numpy(m))
    assert found["energy_r64"] == pytest.approx(1.0) and found["sigma_1"] == pytest.approx(s[0])


def test_effective_rank_and_rank_for_energy():
    assert linalg.effective_rank(torch.tensor([1.0, 1.0, 1.0, 0.0])) == pytest.approx(3.0)   # exp(ln 3)
    assert linalg.effective_rank(torch.tensor([5.0, 0.0])) == pytest.approx(1.0)
    assert linalg.rank_for_energy(torch.tensor([3.0, 2.0, 1.0])) == 2    # 9/14 = 0.64 < 0.9 ≤ 13/14
    assert linalg.rank_for_energy(torch.tensor([3.0, 0.0])) == 1


# End to end: tiny runs on the fixture SST-2.

def tiny(root, glue_dir, name, *more):
    record = run(compose_cfg("model=tiny-bert", "tracker=none", "trainer.progress=false", f"task.data_dir={glue_dir}",
                             f"trainer.cache_dir={root / 'cache'}", "trainer.batch_size=8", "trainer.epochs=1", *more),
                 root / "runs" / name)
    assert record["status"] == "completed"
    return root / "runs" / name


@pytest.fixture(scope="module")
def runs(glue_dir, tmp_path_factory):
    """Two LoRA runs (r = 2 and 4, seed 0) and a full FT run keeping its ΔW; one epoch: the final model is the best."""
    root = tmp_path_factory.mktemp("analyze")
    lora = ["method=lora", "trainer.lr=1e-2"]
    return {"r2": tiny(root, glue_dir, "r2", *lora, "method.r=2"), "r4": tiny(root, glue_dir, "r4", *lora, "method.r=4"),
            "ft": tiny(root, glue_dir, "ft", "method=full_ft", "trainer.lr=1e-3", "method.save_delta=true")}


def rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def adapter_a(folder, layer, module):
    """A of one adapted module, straight from the saved safetensors."""
    state = load_file(str(folder / "adapter" / "adapter.safetensors"))
    return next(v for k, v in state.items() if f"layer.{layer}." in k and module in k and k.endswith("lora_A")
                ).astype(np.float64)


def test_two_lora_runs_give_the_similarity_table_and_heat_map(runs, tmp_path):
    out = tmp_path / "out"
    assert analyze.main([str(runs["r2"]), str(runs["r4"]), "--out", str(out)]) == 0
    found = rows(out / "analysis_similarity.csv")
    assert {(r["layer"], r["type"]) for r in found} == {("0", "q"), ("0", "v"), ("1", "q"), ("1", "v")}
    assert all(r["comparison"] == "r=2 vs r=4" and r["runs"] == "seed 0" for r in found)
    v1 = [r for r in found if (r["layer"], r["type"]) == ("1", "v")][0]
    top2, top4 = (np.linalg.svd(adapter_a(runs[k], 1, "value"))[2][0] for k in ("r2", "r4"))
    assert float(v1["phi_11"]) == pytest.approx(float(top2 @ top4) ** 2, abs=1e-6)   # φ(1,1) = cos² of top directions
    assert float(v1["random_11"]) == pytest.approx(1 / 32)                             # tiny-bert: d = 32
    assert (out / "plots" / "similarity_lora_q_v_r_2_vs_r_4_seed_0.png").stat().st_size > 1000
    assert "## Subspace similarity of LoRA's A between runs, per layer" in (out / "README.md").read_text()


def test_amplification_table_holds_the_adapters_delta_norm(runs, tmp_path):
    assert analyze.main([str(runs["r4"]), "--out", str(tmp_path / "out"), "--formats", "csv"]) == 0
    found = {(r["layer"], r["type"]): r for r in rows(tmp_path / "out" / "analysis_amplification.csv")}
    state = load_file(str(runs["r4"] / "adapter" / "adapter.safetensors"))
    b, a = (next(v for k, v in state.items() if "layer.0." in k and "query" in k and k.endswith(f"lora_{x}"))
            for x in ("B", "A"))
    row = found[("0", "q")]
    assert float(row["delta_norm"]) == pytest.approx(np.linalg.norm((8 / 4) * b.astype(float) @ a), rel=1e-5)  # α/r
    assert float(row["amplification"]) == pytest.approx(float(row["delta_norm"]) / float(row["proj_delta"]))
    assert float(row["proj_w"]) >= float(row["proj_delta"]) and row["r"] == "4"   # W's own top 4 are its largest


def test_full_ft_with_save_delta_keeps_delta_and_gives_spectra(runs, tmp_path):
    from harness.models.classifier import load_classifier

    folder = runs["ft"]
    meta = json.loads((folder / "adapter" / "delta_config.json").read_text())
    assert len(meta["matrices"]) == 8 and {e["type"] for e in meta["matrices"].values()} == {"q", "k", "v", "o"}
    record = json.loads((folder / "run.json").read_text())
    torch.manual_seed(record["seed"])            # the run's W₀, drawn again (a tiny model is random)
    w0 = dict(load_classifier(record["config"]["model"], 2).named_parameters())
    trained, delta = load_file(str(folder / "best.safetensors")), load_file(str(folder / "adapter" / "delta.safetensors"))
    name = "bert.encoder.layer.1.attention.output.dense"
    expected = trained[f"{name}.weight"] - w0[f"{name}.weight"].detach().numpy()
    assert delta[name].dtype == np.float16 and np.abs(expected).max() > 1e-4
    np.testing.assert_allclose(delta[name].astype(np.float32), expected, atol=2e-6, rtol=2e-3)

    assert analyze.main([str(folder), "--out", str(tmp_path / "out")]) == 0
    found = {(r["layer"], r["type"]): r for r in rows(tmp_path / "out" / "analysis_spectrum.csv")}
    s = np.linalg.svd(delta[name].astype(np.float64), compute_uv=False)
    assert float(found[("1", "o")]["energy_r1"]) == pytest.approx(s[0] ** 2 / np.sum(s ** 2), rel=1e-6)
    assert float(found[("1", "o")]["energy_r64"]) == pytest.approx(1.0)   # 64 ≥ 32 = the matrix's size
    assert (tmp_path / "out" / "plots" / "spectrum_full_ft.png").is_file()


def test_one_line_errors(runs, tmp_path, capsys):
    assert analyze.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no run.json there" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(runs["r2"], broken, ignore=shutil.ignore_patterns("adapter"))
    assert analyze.main([str(broken), "--out", str(tmp_path / "out")]) == 2
    assert "adapter is missing" in capsys.readouterr().err
    other = tmp_path / "other"                   # the same tiny model drawn with another seed: another W₀
    shutil.copytree(runs["r4"], other)
    record = json.loads((other / "run.json").read_text())
    record["seed"] = record["config"]["seed"] = 5
    (other / "run.json").write_text(json.dumps(record))
    assert analyze.main([str(runs["r2"]), str(other), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different base models: tiny-bert drawn with seed 0" in err


def test_harness_report_adds_the_section_only_for_runs_that_kept_matrices(runs, tmp_path):
    assert report.main([str(runs["r2"].parent), "--out", str(tmp_path / "with"), "--formats", "md"]) == 0
    assert "Subspace similarity of LoRA's A" in (tmp_path / "with" / "README.md").read_text()
    assert (tmp_path / "with" / "plots" / "similarity_lora_q_v_r_2_vs_r_4_seed_0.png").is_file()
    assert report.main([str(runs["r2"].parent), "--out", str(tmp_path / "off"), "--formats", "md", "--no-analysis"]) == 0
    assert "analysis" not in (tmp_path / "off" / "README.md").read_text().lower()
    bare = tmp_path / "bare"
    for name in ("r2", "r4", "ft"):
        (bare / name).mkdir(parents=True)
        shutil.copy(runs[name] / "run.json", bare / name / "run.json")
    assert report.main([str(bare), "--out", str(tmp_path / "without"), "--formats", "md"]) == 0
    assert "analysis" not in (tmp_path / "without" / "README.md").read_text().lower()


def test_save_delta_is_not_part_of_a_runs_identity():
    plain = compose_cfg("method=full_ft")
    kept = compose_cfg("method=full_ft", "method.save_delta=true", "method.delta_dtype=float32")
    plain, kept = (OmegaConf.to_container(c, resolve=True) for c in (plain, kept))
    assert run_id(plain) == run_id(kept)
    for key in ("save_delta", "delta_types", "delta_dtype"):   # the records made before these keys: the same ids
        del plain["method"][key]
    assert run_id(plain) == run_id(kept)


def test_full_ft_delta_of_gpt2s_fused_c_attn_is_kept_per_weight_type(tmp_path):
    from methods.full_ft import save_delta
    from tests.methods_util import adapt, tiny_classifier

    model, info = tiny_classifier("tiny-gpt2")
    model, cfg = adapt("full_ft", model, info, save_delta=True, delta_types=["q", "v"], delta_dtype="float32")
    c_attn = model.transformer.h[1].attn.c_attn          # Conv1D: weight is in × out, out = [q | k | v], 32 each
    with torch.no_grad():
        c_attn.weight[:, 64:96] += 0.5                   # a training step that moved Wv of layer 1 only
    save_delta(model, cfg, info, tmp_path / "adapter")
    meta = json.loads((tmp_path / "adapter" / "delta_config.json").read_text())["matrices"]
    key = "transformer.h.1.attn.c_attn#v"
    assert meta[key] == {"module": "transformer.h.1.attn.c_attn", "rows": [64, 32], "layer": 1, "type": "v",
                         "dtype": "float32"}
    assert len(meta) == 4 and info.matrix_of("transformer.h.0.attn.c_attn", 32, 32) == (0, "k")
    delta = load_file(str(tmp_path / "adapter" / "delta.safetensors"))
    assert np.allclose(delta[key], 0.5, atol=1e-6) and delta[key].shape == (32, 32)   # out × in
    assert not delta["transformer.h.1.attn.c_attn#q"].any() and not delta["transformer.h.0.attn.c_attn#v"].any()


def test_where_keeps_records_by_their_settings(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert analyze.main([str(runs["r2"].parent), "--out", str(out), "--where", "config.method.r=4", "--formats", "csv"]) == 0
    assert {r["r"] for r in rows(out / "analysis_amplification.csv")} == {"4"}   # r = 2 left out, so no pair either
    assert not (out / "analysis_similarity.csv").exists() and (out / "analysis_spectrum.csv").exists()  # full FT: no r
    assert analyze.main([str(runs["r2"].parent), "--out", str(out), "--where", "config.method.rank=4"]) == 2
    assert "--where config.method.rank: no run record has this key" in capsys.readouterr().err
