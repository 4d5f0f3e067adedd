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


def test_paired_difference_with_and_without_predictions():
    import numpy as np
    import pandas as pd

    from sercore import metrics

    rng = np.random.default_rng(0)
    rows = []
    for f in range(4):
        y = rng.integers(0, 3, 30)
        for variant, acc in (("a", 0.4), ("b", 0.8)):
            p = np.where(rng.random(30) < acc, y, (y + 1) % 3)
            rows.append(pd.DataFrame({"variant": variant, "protocol": "speaker_kfold", "fold": f, "seed": 0,
                                      "speaker": f"s{f}", "utt_id": [f"u{f}_{i}" for i in range(30)],
                                      "true": y, "pred": p, "run_id": f"{variant}{f}"}))
    preds = pd.concat(rows, ignore_index=True)
    res = (preds.groupby(["variant", "protocol", "fold", "seed", "run_id"])
           .apply(lambda g: pd.Series(metrics.scores(g["true"], g["pred"], 3))).reset_index())
    d = analysis.paired_difference(res, "a", "b", predictions=preds)
    ref = metrics.paired_bootstrap(preds[preds["variant"] == "a"], preds[preds["variant"] == "b"])
    assert d == ref and d["n"] == 4 and d["wins"] == 4 and d["low"] > 0
    assert claims.direction_verdict(d, claim="higher", converged=True) == "reproduced"
    old = analysis.paired_difference(res, "a", "b")            # no predictions: t-interval, labelled
    assert old["method"].startswith("t-interval") and old["n"] == 4
    assert old["mean"] == pytest.approx((res[res.variant == "b"]["uar"].to_numpy()
                                         - res[res.variant == "a"]["uar"].to_numpy()).mean())
    assert analysis.paired_difference(res, "a", "missing")["n"] == 0
    with pytest.raises(Exception, match="protocols"):
        analysis.paired_difference(pd.concat([res, res.assign(protocol="random")]), "a", "b")


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
