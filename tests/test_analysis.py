"""What the notebooks compute (sercore.analysis) and the verdicts on the documents' claims (sercore.claims)."""
from __future__ import annotations

import pytest

from sercore import analysis, claims


def test_frames_lost_and_crop_table():
    import numpy as np
    import pandas as pd

    lost = analysis.frames_lost([1.0, 4.0, 8.0], 4.0, sr=16000, hop_length=256)
    assert lost[0] == 0 and lost[1] == 0
    assert lost[2] == pytest.approx((501 - 251) / 501)           # 1 + 8*16000//256 = 501 frames, 251 kept
    table = analysis.crop_table(pd.DataFrame({"duration": [1.0, 4.0, 8.0]}), [4.0], sr=16000, hop_length=256)
    row = table.iloc[0]
    assert row["utterances cropped (%)"] == pytest.approx(100 / 3)
    assert row["frames lost (%)"] == pytest.approx(100 * 250 / (63 + 251 + 501))
    assert row["padded (%)"] == pytest.approx(100 / 3)
    assert np.isfinite(table.to_numpy(float)).all()


@pytest.mark.parametrize("claimed, low, high, comparable, expected", [
    (0.75, 0.70, 0.80, True, "reproduced"),
    (0.90, 0.70, 0.80, True, "refuted (ours lower)"),
    (0.60, 0.70, 0.80, True, "refuted (ours higher)"),
    (0.75, 0.70, 0.80, False, "not comparable (other corpus)"),
])
def test_verdict(claimed, low, high, comparable, expected):
    assert claims.verdict(claimed, (low + high) / 2, low, high, comparable=comparable, why="other corpus") == expected


def test_paired_difference_and_direction():
    import pandas as pd

    res = pd.DataFrame({"variant": ["a"] * 4 + ["b"] * 4, "fold": [0, 1, 2, 3] * 2, "seed": 0,
                        "uar": [0.5, 0.6, 0.55, 0.4, 0.6, 0.72, 0.64, 0.52]})
    d = analysis.paired_difference(res, "a", "b")
    assert d["n"] == 4 and d["wins"] == 4 and d["mean"] == pytest.approx(0.1075)
    assert d["low"] > 0 and claims.direction_verdict(d, claim="higher") == "reproduced"
    assert claims.direction_verdict(analysis.paired_difference(res, "b", "a"), claim="not lower") == "refuted (lower)"
    assert analysis.paired_difference(res, "a", "missing")["n"] == 0


def test_claims_table_only_compares_like_with_like():
    import pandas as pd

    summary = pd.DataFrame({"variant": ["zhao2d", "zhao2d"], "protocol": ["random", "speaker_kfold"], "n_runs": 5,
                            "wa_mean": [0.80, 0.60], "wa_low": [0.78, 0.55], "wa_high": [0.82, 0.65],
                            "uar_mean": [0.79, 0.58], "uar_low": [0.75, 0.5], "uar_high": [0.83, 0.66]})
    on_emodb = claims.claims_table(summary, "emodb").set_index(["source", "as reported"])["verdict"]
    assert on_emodb[("seed 002", "best validation accuracy 80.68 %")] == "reproduced"          # 0.8068 in [.78, .82]
    assert on_emodb[("seed 000", "validation accuracy 0.73 (speaker-dependent, KerasTuner-tuned)")] == \
        "refuted (ours higher)"
    assert on_emodb[("Zhao et al. 2019 (abstract)", "95.89 % speaker-independent accuracy")] == "refuted (ours lower)"
    assert on_emodb.str.startswith("not comparable").sum() == len(claims.CLAIMS) - 4
    elsewhere = claims.claims_table(summary, "synthetic")["verdict"]
    assert elsewhere.str.startswith("not comparable").all()
    # a reduced profile never "refutes": a briefly trained model below a claim says nothing against it
    quick = claims.claims_table(summary, "emodb", profile="quick").set_index(["source", "as reported"])["verdict"]
    assert quick[("Zhao et al. 2019 (abstract)", "95.89 % speaker-independent accuracy")] == \
        "not reproduced at quick (ours lower)"
    assert not quick.str.startswith("refuted").any()
    assert quick[("seed 002", "best validation accuracy 80.68 %")] == "reproduced"
    full = claims.claims_table(summary, "emodb", profile="full")["verdict"]
    assert full.str.startswith("refuted").sum() == 3        # 95.33 and 95.89 above ours, 0.73 below


def test_claims_table_says_why_a_claim_has_no_number():
    import pandas as pd

    summary = pd.DataFrame({"variant": ["zhao2d"], "protocol": ["speaker_kfold"], "n_runs": 5,
                            "wa_mean": [0.6], "wa_low": [0.55], "wa_high": [0.65],
                            "uar_mean": [0.58], "uar_low": [0.5], "uar_high": [0.66]})
    table = claims.claims_table(summary, "emodb").set_index(["source", "model"])
    one_d = table.loc[("seed 002", "zhao1d")]
    assert one_d["ours"] == "not run" and "not among this run's models" in one_d["verdict"]
    sd = table.loc[("seed 000", "zhao2d")]             # model run, but not under the claim's protocol
    assert sd["ours"] == "not run" and "not among" not in sd["verdict"]


def test_default_models_follow_the_profile():
    from sercore.models import list_models, model_info
    from sercore.profiles import get_profile

    classifiers = {m for m in list_models() if model_info(m)["task"] == "classify"} - {"ae_fusion"}
    assert set(analysis.default_models("full")) == classifiers
    quick = analysis.default_models("quick")
    assert set(quick) == set(get_profile("quick").models) and set(quick) < classifiers
    assert {"zhao1d", "zhao1d_bilstm", "dcnn_blstm_attn"}.isdisjoint(quick)
    assert analysis.default_models("smoke") == list(get_profile("smoke").models) == ["zhao2d", "attn_blstm"]
    assert set(analysis.classifiers()) == classifiers
