"""Verdicts on the documents' claims (sercore.claims): every branch, the tables, and the claims' metadata."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sercore import claims, metrics
from sercore.profiles import get_profile

FULL = {"converged": True}
QUICK = {"profile": "quick"}


@pytest.mark.parametrize("claimed, low, high, kw, expected", [
    (0.75, 0.70, 0.80, FULL, "reproduced"),
    (0.75, 0.70, 0.80, QUICK, "reproduced"),                    # a narrow interval decides at any profile
    (0.75, 0.55, 0.95, FULL, "not decided (interval too wide: +-20.0 points > 10)"),
    (0.75, 0.55, 0.95, QUICK, "not decided (interval too wide: +-20.0 points > 10)"),
    (0.90, 0.70, 0.80, FULL, "refuted (ours lower)"),
    (0.60, 0.70, 0.80, FULL, "refuted (ours higher)"),
    (0.90, 0.70, 0.80, QUICK, "not reproduced at quick (ours lower)"),
    (0.60, 0.70, 0.80, QUICK, "not reproduced at quick (ours higher)"),
    (0.90, 0.70, 0.80, {}, "not reproduced at this profile (ours lower)"),   # convergence unknown
    (0.90, 0.70, 0.80, {"reduced": "quick"}, "not reproduced at quick (ours lower)"),  # old keyword
    (0.90, 0.70, 0.80, {"profile": "full"}, "refuted (ours lower)"),
    (0.75, 0.70, 0.80, {**FULL, "comparable": False, "why": "other corpus"}, "not comparable (other corpus)"),
    (0.75, float("nan"), float("nan"), FULL, "not decided (no interval)"),
])
def test_value_verdict_every_branch(claimed, low, high, kw, expected):
    assert claims.verdict(claimed, (low + high) / 2 if low == low else 0.75, low, high, **kw) == expected


def test_value_verdict_reads_the_profile_attribute_not_its_name():
    standard = get_profile("quick").replace(name="standard", converged=True)
    assert claims.verdict(0.9, 0.75, 0.7, 0.8, profile=standard) == "refuted (ours lower)"
    assert claims.verdict(0.9, 0.75, 0.7, 0.8, profile=get_profile("full").replace(converged=False)) == \
        "not reproduced at full (ours lower)"
    assert get_profile("full").converged and not get_profile("quick").converged
    # the tolerance is the stated constant, inclusive
    t = claims.VALUE_TOLERANCE
    assert claims.verdict(0.7, 0.7, 0.7 - t, 0.7 + t, converged=True) == "reproduced"


def _d(low, high, n=5):
    return {"mean": (low + high) / 2, "low": low, "high": high, "n": n}


@pytest.mark.parametrize("diff, claim, kw, expected", [
    (_d(0.01, 0.05), "higher", FULL, "reproduced"),
    (_d(0.01, 0.05), "higher", QUICK, "reproduced"),
    (_d(-0.02, 0.05), "higher", FULL, "not decided (interval includes 0)"),
    (_d(-0.08, -0.01), "higher", FULL, "refuted (b lower)"),
    (_d(-0.08, -0.01), "higher", QUICK, "not reproduced at quick (b lower)"),
    (_d(-0.02, 0.04), "at least as good", FULL, "reproduced (b worse by less than the 3-point margin)"),
    (_d(-0.02, 0.04), "not lower", FULL, "reproduced (b worse by less than the 3-point margin)"),  # old name
    (_d(-0.10, 0.04), "at least as good", FULL, "not decided (interval includes -3 points)"),
    (_d(-0.10, -0.05), "at least as good", FULL, "refuted (b worse by more than 3 points)"),
    (_d(-0.10, -0.05), "at least as good", QUICK, "not reproduced at quick (b worse by more than 3 points)"),
    (_d(0.01, 0.05), "higher", {"comparable": False, "why": "x"}, "not comparable (x)"),
    (_d(0.01, 0.05, n=0), "higher", FULL, "not decided (no interval)"),
])
def test_direction_verdict_every_branch(diff, claim, kw, expected):
    assert claims.direction_verdict(diff, claim=claim, **kw) == expected


def test_the_committed_02_case_is_not_decided():
    """Dense - LSTM = -6.3 [-21.5, +8.9]: no difference shown, neither "higher" nor non-inferior."""
    d = _d(-0.215, 0.089)
    assert claims.direction_verdict(d, claim="higher", profile="quick") == "not decided (interval includes 0)"
    assert claims.direction_verdict(d, claim="at least as good", profile="quick").startswith("not decided")
    with pytest.raises(Exception, match="unknown direction claim"):
        claims.direction_verdict(d, claim="lower")


def test_rules_out_says_what_an_interval_decides():
    assert claims.rules_out({"low": -0.041, "high": 0.03}) == (
        "rules out b being better by more than 3.0 points or worse by more than 4.1 points; "
        "cannot rule out no difference, nor a difference of up to 4.1 points")
    assert claims.rules_out({"low": -0.12, "high": 0.02}).endswith("a difference of up to 12.0 points")
    assert claims.rules_out({"low": 0.02, "high": 0.12}) == \
        "rules out no difference and b being worse; b is better by 2.0 to 12.0 points"
    assert claims.rules_out({"low": -0.12, "high": -0.02}) == \
        "rules out no difference and b being better; b is worse by 2.0 to 12.0 points"
    assert claims.rules_out({"low": float("nan"), "high": 0.1}).startswith("no interval")


def _summary(wa_random=(0.80, 0.78, 0.82), wa_si=(0.60, 0.55, 0.65)):
    return pd.DataFrame({"variant": ["zhao2d", "zhao2d"], "protocol": ["random", "speaker_kfold"], "n_runs": 15,
                         "wa": [wa_random[0], wa_si[0]], "wa_low": [wa_random[1], wa_si[1]],
                         "wa_high": [wa_random[2], wa_si[2]], "uar": [0.79, 0.58], "uar_low": [0.75, 0.5],
                         "uar_high": [0.83, 0.66], "method": "bootstrap over test speakers"})


def test_claims_table_compares_like_with_like():
    full = claims.claims_table(_summary(), "emodb", profile="full").set_index(["source", "as reported"])["verdict"]
    # seed 002 reports best validation accuracy of its own windowing: never set against our test accuracy
    assert full[("seed 002", "best validation accuracy 80.68 %")] == \
        "not comparable (claimed protocol unknown; best validation accuracy vs our test accuracy)"
    assert full[("seed 000", "validation accuracy 0.73 (speaker-dependent, KerasTuner-tuned)")] == \
        "not comparable (validation accuracy vs our test accuracy)"
    assert full[("Zhao et al. 2019 (abstract)", "95.89 % speaker-independent accuracy")] == "refuted (ours lower)"
    assert full[("Zhao et al. 2019 (abstract)", "95.33 % speaker-dependent accuracy")] == "refuted (ours lower)"
    assert full.str.startswith("not comparable").sum() == len(claims.CLAIMS) - 2
    quick = claims.claims_table(_summary(), "emodb", profile="quick")["verdict"]
    assert not quick.str.startswith("refuted").any()
    assert (quick == "not reproduced at quick (ours lower)").sum() == 2
    assert claims.claims_table(_summary(), "synthetic")["verdict"].str.startswith("not comparable").all()
    # a claim inside a wide interval is not decided; inside a narrow one, reproduced
    wide = claims.claims_table(_summary(wa_random=(0.90, 0.80, 0.9999)), "emodb", profile="full")
    sd = wide.set_index("as reported").loc["95.33 % speaker-dependent accuracy"]
    assert sd["verdict"] == "reproduced" and sd["interval"] == "bootstrap over test speakers"
    wider = claims.claims_table(_summary(wa_random=(0.85, 0.70, 0.99)), "emodb", profile="full")
    assert wider.set_index("as reported").loc["95.33 % speaker-dependent accuracy", "verdict"].startswith(
        "not decided (interval too wide")


def test_claims_table_reads_older_summaries_and_says_why_a_claim_has_no_number():
    summary = pd.DataFrame({"variant": ["zhao2d"], "protocol": ["speaker_kfold"], "n_runs": 5,
                            "wa_mean": [0.6], "wa_low": [0.55], "wa_high": [0.65],
                            "uar_mean": [0.58], "uar_low": [0.5], "uar_high": [0.66]})
    table = claims.claims_table(summary, "emodb", profile="full").set_index(["source", "model"])
    assert table.loc[("Zhao et al. 2019 (abstract)", "zhao2d")].iloc[1]["verdict"] == "refuted (ours lower)"
    one_d = table.loc[("seed 002", "zhao1d")]
    assert one_d["ours"] == "not run" and "not among this run's models" in one_d["verdict"]


def test_seed_003_claims_are_judged_on_the_leaky_runs_only():
    """Notebook 05's use: the base network's leaky RAVDESS runs against seed 003's leaky test accuracies."""
    leaky = [c for c in claims.CLAIMS if c["protocol"] == "random+leaky-augmentation"]
    assert {c["source"] for c in leaky} == {"seed 003"} and len(leaky) == 4
    row = pd.DataFrame({"variant": ["baseline_cnn"], "protocol": ["random+leaky-augmentation"], "n_runs": 5,
                        "wa": [0.90], "wa_low": [0.89], "wa_high": [0.91], "uar": [0.9], "uar_low": [0.89],
                        "uar_high": [0.91], "method": "bootstrap over test utterances within classes"})
    table = claims.claims_table(row, "ravdess", claims=leaky, profile="standard").set_index("model")["verdict"]
    assert table["baseline_cnn"] == "refuted (ours lower)"          # 92.31 % claimed, 89-91 % ours
    assert table["attn_blstm"].startswith("not comparable") and "not among this run's models" in table["attn_blstm"]
    assert "best-epoch accuracy on the test split" in table["ae_fusion"]   # selected on the test split
    assert table["(none in sercore)"].startswith("not comparable (no matching network")
    inside = row.assign(wa=0.92, wa_low=0.91, wa_high=0.935)
    assert claims.claims_table(inside, "ravdess", claims=leaky, profile="standard").set_index("model").loc[
        "baseline_cnn", "verdict"] == "reproduced"
    # on another corpus, or where only the honest protocol ran, nothing is judged
    assert claims.claims_table(row, "emodb", claims=leaky, profile="standard")["verdict"].str.startswith(
        "not comparable").all()
    honest = claims.claims_table(row.assign(protocol="random"), "ravdess", claims=leaky, profile="standard")
    assert "notebook 05 runs the leaky protocol" in honest.set_index("model").loc["baseline_cnn", "verdict"]


def test_claims_metadata():
    for c in claims.CLAIMS:
        assert c["measure"] in ("test", "best test", "validation", None)
        assert c["protocol"] in claims.PROTOCOL_NAMES and c["metric"] in ("wa", "uar")
    by = {(c["source"], c["value"]): c for c in claims.CLAIMS}
    assert all(c["measure"] == "validation" for c in claims.CLAIMS if c["source"] in ("seed 000", "seed 002"))
    assert all(c["protocol"] is None for c in claims.CLAIMS if c["source"] == "seed 002")   # split never stated
    assert by[("seed 003", 0.9754)]["measure"] == "best test"
    dense = [c for c in claims.DIRECTION_CLAIMS if c["b"] == "zhao2d_dense"]
    assert len(dense) == 1 and dense[0]["claim"] == "higher"        # seed 000: "higher than the original"


def _runs(rng, gap, protocols=("random",)):
    rows = []
    for proto in protocols:
        for f in range(5):
            for spk in (f"s{2 * f}", f"s{2 * f + 1}"):
                y = rng.integers(0, 4, 40)
                for seed in (0, 1, 2):
                    for variant, acc in (("zhao2d", 0.5), ("zhao2d_dense", 0.5 + gap)):
                        p = np.where(rng.random(40) < acc, y, (y + 1) % 4)
                        rows.append(pd.DataFrame({"variant": variant, "protocol": proto, "fold": f, "seed": seed,
                                                  "speaker": spk, "utt_id": [f"{spk}_{i}" for i in range(40)],
                                                  "true": y, "pred": p, "run_id": f"{proto}-{variant}-{f}-{seed}"}))
    preds = pd.concat(rows, ignore_index=True)
    res = (preds.groupby(["variant", "protocol", "fold", "seed", "run_id"])
           .apply(lambda g: pd.Series(metrics.scores(g["true"], g["pred"], 4))).reset_index())
    return res, preds


def test_direction_claims_table():
    rng = np.random.default_rng(0)
    res, preds = _runs(rng, 0.3, protocols=("random", "speaker_kfold"))
    dense = [c for c in claims.DIRECTION_CLAIMS if c["b"] == "zhao2d_dense"]
    table = claims.direction_claims_table(res, preds, "emodb", claims=dense, profile="full", n_boot=300)
    row = table.iloc[0]
    assert len(table) == 1 and row["verdict"] == "reproduced" and row["pairs b > a"] == "15 of 15"
    assert row["what it rules out"].startswith("rules out no difference") and "seeds" in row["interval"]
    # only the claim's protocol: speaker-independent runs alone cannot judge a speaker-dependent claim
    si_only = claims.direction_claims_table(res[res["protocol"] == "speaker_kfold"], preds, "emodb", claims=dense)
    assert si_only.iloc[0]["verdict"].startswith("not comparable (zhao2d and zhao2d_dense not both run")
    res0, preds0 = _runs(rng, 0.0)
    flat = claims.direction_claims_table(res0, preds0, "emodb", claims=dense, profile="full", n_boot=300)
    assert flat.iloc[0]["verdict"] == "not decided (interval includes 0)"
    res_w, preds_w = _runs(rng, -0.3)
    assert claims.direction_claims_table(res_w, preds_w, "emodb", claims=dense, profile="quick",
                                         n_boot=300).iloc[0]["verdict"] == "not reproduced at quick (b lower)"
    assert claims.direction_claims_table(res_w, preds_w, "emodb", claims=dense, profile="full",
                                         n_boot=300).iloc[0]["verdict"] == "refuted (b lower)"
