"""sercore bench: the JSON it writes has every figure the README promises (no speed assertions)."""
import json

import jax
import pytest

from sercore import bench
from sercore.cli import main
from sercore.errors import ConfigError


def test_run_bench_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    lines = []
    result = bench.run_bench(["zhao2d"], steps=1, repeats=1, warmup=0, out=out, features=False,
                             input_shape=(16, 40, 1), train_batch=2, infer_batch=2, echo=lines.append)
    saved = json.loads(out.read_text())
    assert saved["models"].keys() == {"zhao2d"} == result["models"].keys()
    r = saved["models"]["zhao2d"]
    assert r["params"] > 0 and r["input_shape"] == [16, 40, 1]
    assert r["gflop_per_sample"]["infer"] > 0 and r["gflop_per_sample"]["train"] > r["gflop_per_sample"]["infer"]
    if jax.default_backend() == "cpu":
        # The model's FLOPs are counted with the direct convolution; on CPU its 3 x 3 LFLBs run as
        # Winograd, which executes fewer (a stale trace would make the two counts equal).
        for kind in ("infer", "train"):
            assert r["gflop_per_sample"][kind] > r["gflop_per_sample_executed"][kind] > 0
    for key in ("train_samples_per_s", "infer_samples_per_s"):
        rates = r[key]
        assert rates["min"] <= rates["median"] <= rates["max"] and len(rates["all"]) == 1 and rates["min"] > 0
    assert r["compile_s"] > 0 and r["first_step_s"] > 0
    cpu = saved["machine"]["cpu"]
    assert cpu["cores"] >= 1 and ("peak_gflops" in cpu)
    if cpu["peak_gflops"] is not None:
        assert r["train_pct_peak"] > 0
    assert "zhao2d" in lines[-2] or any("zhao2d" in line for line in lines)   # the printed table


def test_bench_features_structure():
    f = bench.bench_features(n_clips=2, repeats=1)
    assert f["librosa"]["median"] > 0 and f["sercore_numpy"]["median"] > 0
    if f["jax"] is not None:
        assert f["jax_max_abs_db_vs_librosa"] < 1e-2


def test_bench_rejects_unknown_model_and_autoencoders(tmp_path):
    with pytest.raises(ConfigError, match="unknown model"):
        bench.run_bench(["no_such_net"], out=None, echo=None)
    with pytest.raises(ConfigError, match="autoencoder"):
        bench.bench_model("dense_ae")


def test_cli_bench_help(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "--models" in out and "--devices" in out and "--executors" in out
