"""Inputs a recorder really produces (issue #18): unusable audio is refused, suspicious audio is flagged,
whole files are scored, a batch survives bad files, bad arguments and damaged saved state get messages.

Every audio file is generated here (numpy + soundfile into tmp_path); the saved model is the TinyNet of
``test_predict.saved_dir``.
"""
from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import soundfile as sf

from sercore import audio, predict
from sercore.cli import main
from sercore.errors import AudioError, ConfigError, DataError, ModelError
from test_predict import saved_dir  # noqa: F401  (the saved TinyNet fixture)

SR = 16000


def speech_like(seconds: float, sr: int = SR, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A voiced-sounding stand-in: a 4 Hz amplitude-modulated harmonic tone plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    tone = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in (1, 2, 3))
    y = level * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) * tone / 1.8 + level * 0.02 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def write(path, y, sr=SR, subtype="PCM_16"):
    sf.write(str(path), y, sr, subtype=subtype)
    return path


def truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


# ------------------------------------------------------------------------------------------------
# The catalogue: what counts as unusable and as suspicious
# ------------------------------------------------------------------------------------------------

UNUSABLE = {
    "digital_silence": (lambda p: write(p, np.zeros(SR, np.float32)), "holds no speech"),
    "padding_noise": (lambda p: write(p, 1e-4 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)),
                      "holds no speech"),
    "cancelling_stereo": (lambda p: write(p, np.stack([speech_like(1.0, 44100), -speech_like(1.0, 44100)], 1),
                                          sr=44100), "channels cancel"),
    "one_sample": (lambda p: write(p, speech_like(1.0)[:1]), "too short"),
    "50_ms": (lambda p: write(p, speech_like(0.05)), "too short"),
}

SUSPICIOUS = {
    "clipped_square": (lambda p: write(p, np.sign(np.sin(2 * np.pi * 150 * np.arange(SR) / SR)).astype(np.float32)),
                       "clipped: 100.0 %"),
    "float_beyond_full_scale": (lambda p: write(p, 40 * speech_like(1.0), subtype="FLOAT"), "beyond [-1, 1]"),
    "truncated_copy": (lambda p: truncate(write(p, speech_like(2.0))), "truncated: the header declares 32000"),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_audio_is_reported_with_the_reason(tmp_path, case):
    make, reason = UNUSABLE[case]
    path = make(tmp_path / f"{case}.wav")
    y, report = audio.read_audio(path)
    assert report.unusable is not None and reason in report.unusable
    with pytest.raises(AudioError, match=reason) as info:     # feature extraction refuses it
        audio.load_audio(path, require_speech=True)
    assert info.value.path == str(path)
    assert audio.load_audio(path).shape == y.shape            # plain reading still works


@pytest.mark.parametrize("case", list(SUSPICIOUS))
def test_suspicious_audio_is_usable_with_a_warning(tmp_path, case):
    make, warning = SUSPICIOUS[case]
    _, report = audio.read_audio(make(tmp_path / f"{case}.wav"))
    assert report.unusable is None
    assert len(report.warnings) == 1 and warning in report.warnings[0]


def test_clean_speech_passes_and_thresholds_hold(tmp_path):
    _, report = audio.read_audio(write(tmp_path / "ok.wav", speech_like(1.0)))
    assert report.unusable is None and report.warnings == [] and not report.truncated
    assert report.speech == pytest.approx((0.0, 1.0), abs=0.011)
    # just above / below the thresholds
    assert audio.check_waveform(speech_like(0.12), SR)[0] is None
    assert "too short" in audio.check_waveform(speech_like(0.09), SR)[0]
    quiet = speech_like(1.0, level=10 ** (-68 / 20))   # frame RMS about -75 dBFS: under the -60 floor
    assert "holds no speech" in audio.check_waveform(quiet, SR)[0]
    assert "NaN" in audio.check_waveform(np.array([0.1, np.nan] * 2000, np.float32), SR)[0]
    y = speech_like(1.0, level=0.5)
    y[:100] = 1.0                                       # 0.6 % clipped: under the 1 % line
    _, rep = audio.read_audio(write(tmp_path / "few.wav", y, subtype="FLOAT"))
    assert rep.warnings == [] and rep.clipped_fraction == pytest.approx(0.00625, abs=1e-4)


def test_declared_frames_reads_the_wav_header(tmp_path):
    path = write(tmp_path / "a.wav", speech_like(1.0), subtype="PCM_24")
    assert audio.declared_frames(path) == SR
    truncate(path, 0.4)
    assert audio.declared_frames(path) == SR and sf.info(str(path)).frames < SR
    flac = tmp_path / "a.flac"
    sf.write(str(flac), speech_like(0.5), SR, format="FLAC")
    assert audio.declared_frames(flac) is None


# ------------------------------------------------------------------------------------------------
# predict: refuse, flag, go on; JSON, CSV, exit status
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def catalogue(tmp_path):
    """Folder ``rec/`` with good, unusable and suspicious files, in an order where the bad come first."""
    folder = tmp_path / "rec"
    folder.mkdir()
    files = {}
    for case, (make, _) in {**UNUSABLE, **SUSPICIOUS}.items():
        files[case] = make(folder / f"a_{case}.wav")
    files["good"] = write(folder / "z_good.wav", speech_like(0.8, seed=3))
    (folder / "notes.txt").write_text("not audio, not picked up")
    return folder, files


def test_predict_batch_refuses_flags_and_goes_on(saved_dir, catalogue, tmp_path, capsys):
    folder, files = catalogue
    table = tmp_path / "out" / "answers.csv"
    missing = tmp_path / "missing.wav"
    code = main(["predict", str(missing), str(folder), "--model", str(saved_dir[0]), "--json", "--csv", str(table)])
    assert code == 1                                     # some failed ...
    captured = capsys.readouterr()
    rows = {r["path"]: r for r in map(json.loads, captured.out.splitlines())}
    assert len(rows) == len(files) + 1                   # ... but every file was answered
    for case in UNUSABLE:
        row = rows[str(files[case])]
        assert "label" not in row and str(files[case]) in row["error"] and UNUSABLE[case][1] in row["error"]
    assert "does not exist" in rows[str(missing)]["error"]
    for case in SUSPICIOUS:
        row = rows[str(files[case])]
        assert "error" not in row and row["label"] in row["probabilities"]
        assert len(row["warnings"]) == 1 and SUSPICIOUS[case][1] in row["warnings"][0]
        assert f"sercore: warning: {files[case]}: " in captured.err
    good = rows[str(files["good"])]
    assert good["warnings"] == [] and sum(good["probabilities"].values()) == pytest.approx(1.0, rel=1e-5)
    assert "windows" not in good                         # only with --timeline
    assert f"4 of {len(files) + 1} file(s) predicted" in captured.err and "6 failed" in captured.err
    with open(table, newline="") as fh:
        written = {r["path"]: r for r in csv.DictReader(fh)}
    assert set(written) == set(rows)
    assert written[str(files["digital_silence"])]["label"] == "" and "no speech" in \
        written[str(files["digital_silence"])]["error"]
    assert written[str(files["truncated_copy"])]["warnings"].startswith("truncated")
    assert float(written[str(files["good"])]["p_anger"]) == pytest.approx(good["probabilities"]["anger"], rel=1e-5)


def test_predict_all_good_exits_0_and_text_mode_names_errors(saved_dir, catalogue, capsys):
    folder, files = catalogue
    assert main(["predict", str(files["good"]), "--model", str(saved_dir[0])]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{files['good']}: ") and "scored 0.00-0.80 s of 0.80 s over 1 window(s)" in out
    assert main(["predict", str(files["one_sample"]), str(files["good"]), "--model", str(saved_dir[0])]) == 1
    captured = capsys.readouterr()
    assert f"sercore: error: {files['one_sample']}: is too short" in captured.err
    assert captured.out.startswith(f"{files['good']}: ")    # the file after the bad one is answered
    assert main(["predict", str(files["good"]), "--model", str(saved_dir[0]), "--csv", str(folder)]) == 1
    assert f"cannot write --csv {folder}" in capsys.readouterr().err
    empty = folder / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), "--model", str(saved_dir[0]), "--json"]) == 1
    assert "holds no audio files" in json.loads(capsys.readouterr().out)["error"]


# ------------------------------------------------------------------------------------------------
# Whole-file scoring
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def crop_model(saved_dir, tmp_path):
    """The same TinyNet, saved as trained on crops of 8 frames scored every 4 (the study's recipe)."""
    from test_study import tiny_registry

    folder, _, cfg, norm = saved_dir
    model = tiny_registry().create("tiny", num_classes=3, input_shape=(cfg.n_mels, 8, 1), seed=2)
    model.eval()
    out = predict.save_model(tmp_path / "crop-model", model, cfg, ["anger", "neutral", "sadness"], norm, "tiny",
                             extra={"crop_frames": 8, "window_step": 4}, input_shape=(cfg.n_mels, 8, 1))
    return predict.load_model(out)


def test_long_file_is_scored_whole_after_trimming_silence(saved_dir, tmp_path):
    """12 s: 5 s of padding-level noise, then 6 s of speech-like sound, then 1 s of silence."""
    saved = predict.load_model(saved_dir[0])
    rng = np.random.default_rng(0)
    y = np.concatenate([1e-4 * rng.standard_normal(5 * SR), speech_like(6.0), np.zeros(SR)]).astype(np.float32)
    out = predict.predict_file(write(tmp_path / "long.wav", y), saved)
    assert out["duration"] == pytest.approx(12.0)
    assert out["speech"] == pytest.approx([4.9, 11.1], abs=0.02)       # trimmed, with 0.1 s margins
    windows = out["windows"]
    assert len(windows) == out["n_windows"] == 12          # 1 s clips every 0.512 s over 6.2 s, + one at the end
    assert windows[0]["start"] == pytest.approx(out["speech"][0]) and windows[-1]["end"] == pytest.approx(11.1, abs=0.04)
    assert all(b["start"] - a["start"] == pytest.approx(0.512) for a, b in zip(windows[:-2], windows[1:-1]))
    # the answer is the mean of the windows' logits (= of their log-probabilities)
    logp = np.log([[w["probabilities"][k] for k in saved.labels] for w in windows]).mean(0)
    expected = np.exp(logp - logp.max()) / np.exp(logp - logp.max()).sum()
    np.testing.assert_allclose(list(out["probabilities"].values()), expected, rtol=1e-4)
    untrimmed = predict.predict_file(tmp_path / "long.wav", saved, trim=False)
    assert untrimmed["speech"] == [0.0, 12.0] and untrimmed["n_windows"] == 23


def test_windows_are_streamed_with_the_same_answer(crop_model, tmp_path, monkeypatch):
    """Scoring in blocks of 3 windows gives the whole-file answer, and no block holds the whole file."""
    import sercore.features

    path = write(tmp_path / "long.wav", speech_like(20.0))
    whole = predict.predict_file(path, crop_model)
    seen = []
    real = sercore.features.compute
    monkeypatch.setattr(sercore.features, "compute", lambda y, cfg: (seen.append(len(y)), real(y, cfg))[1])
    monkeypatch.setattr(predict, "WINDOW_BATCH", 3)
    streamed = predict.predict_file(path, crop_model)
    assert max(seen) < 2 * SR and len(seen) == -(-whole["n_windows"] // 3)
    np.testing.assert_allclose(list(streamed["probabilities"].values()), list(whole["probabilities"].values()),
                               rtol=1e-5)
    # the crop model's whole-file answer is the study's: predict_proba over all windows at once
    from sercore.features import compute, valid_steps
    from sercore.training import predict_proba

    cfg = crop_model.feature_cfg
    y = audio.load_audio(path)
    wcfg = cfg.replace(duration=len(y) / SR)
    ref = predict_proba(crop_model.model, crop_model.normalizer.apply(real(y, wcfg)[None]),
                        lengths=valid_steps([len(y) / SR], wcfg), crop_frames=8, window_step=4)[0]
    np.testing.assert_allclose(list(whole["probabilities"].values()), ref, rtol=1e-4)


def test_timeline_window_shorter_than_the_crop_is_refused_before_the_batch(crop_model, tmp_path, capsys):
    with pytest.raises(ConfigError, match="shorter than the 0.22 s the model was trained on"):
        predict.timeline_sizes(crop_model, 0.2)
    assert predict.timeline_sizes(crop_model) == pytest.approx((0.224, 0.112))
    path = write(tmp_path / "talk.wav", speech_like(1.0))
    argv = ["predict", str(path), "--model", str(tmp_path / "crop-model"), "--timeline", "--window", "0.2"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "give --window 0.22 or more" in captured.err and captured.out == "" and "predicted" not in captured.err


def test_timeline_in_json_and_text(saved_dir, tmp_path, capsys):
    path = write(tmp_path / "talk.wav", speech_like(3.0))
    assert main(["predict", str(path), "--model", str(saved_dir[0]), "--timeline", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_windows"] == len(out["windows"]) == 5 and {"start", "end", "label", "probabilities"} <= set(
        out["windows"][0])
    assert main(["predict", str(path), "--model", str(saved_dir[0]), "--timeline", "--window", "1.5",
                 "--hop", "1.0", "--json"]) == 0
    custom = json.loads(capsys.readouterr().out)["windows"]
    assert [w["start"] for w in custom] == [0.0, 1.0, 1.5]
    assert main(["predict", str(path), "--model", str(saved_dir[0]), "--timeline"]) == 0
    text = capsys.readouterr().out
    assert "over 5 window(s)" in text and text.count("\n") >= 9
    assert main(["predict", str(write(tmp_path / "long.wav", speech_like(6.0))), "--model", str(saved_dir[0])]) == 0
    assert "--timeline shows each" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# Arguments: ranges at the command line, 0 never meaning "default", partners required
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["predict", "a.wav", "--model", "m", "--timeline", "--window", "0"], "--window: 0 is out of range"),
    (["predict", "a.wav", "--model", "m", "--timeline", "--window", "1e-9"], "give a number 0.1 to 3600"),
    (["predict", "a.wav", "--model", "m", "--timeline", "--hop", "nan"], "--hop: nan is out of range"),
    (["predict", "a.wav", "--model", "m", "--window", "2"], "--window needs --timeline"),
    (["predict", "a.wav", "--model", "m", "--hop", "1"], "--hop needs --timeline"),
    (["predict", "a.wav", "--model", "m", "--timeline", "--window", "1", "--hop", "2"], "--hop 2.0 is longer"),
    (["train", "--model", "tiny", "--epochs", "0"], "--epochs: 0 is out of range; give an integer 1 to 10000"),
    (["train", "--model", "tiny", "--augment", "-1"], "--augment: -1 is out of range"),
    (["evaluate", "--n-boot", "0"], "--n-boot: 0 is out of range"),
    (["data", "baseline", "emodb", "--folds", "1"], "--folds: 1 is out of range; give an integer >= 2"),
    (["data", "synth", "--seed", "-3"], "--seed: -3 is out of range"),
    (["bench", "--steps", "0"], "--steps: 0 is out of range"),
    (["bench", "--repeats", "x"], "'x' is not an integer"),
])
def test_bad_numeric_options_are_refused_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_option_its_partner_would_ignore_is_refused(capsys):
    assert main(["reports", "--index", "--only", "02"]) == 1
    assert "--index only rewrites the index" in capsys.readouterr().err


def test_ranges_are_stated_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0.1 to 3600" in text and "needs --timeline" in text


def test_zero_augment_means_none_and_epochs_are_passed(monkeypatch):
    import sercore.study

    calls = {}

    def fake_run_study(*args, **kw):
        calls.update(kw)
        raise ConfigError("stop here")

    monkeypatch.setattr(sercore.study, "run_study", fake_run_study)
    assert main(["train", "--model", "tiny", "--augment", "0", "--epochs", "1"]) == 1
    assert calls["augment"] == {} and calls["train"] == {"epochs": 1}
    assert main(["train", "--model", "tiny"]) == 1
    assert calls["augment"] is None and calls["train"] is None
    assert main(["train", "--model", "tiny", "--folds", ""]) == 1
    assert main(["train", "--model", "tiny", "--seeds", "-1"]) == 1


def test_more_folds_than_speakers_names_the_option(tmp_path, wav_writer, capsys):
    for rel in ("03a01Wa", "08a02Na", "16b10Td"):
        wav_writer(tmp_path / "emodb" / "wav" / f"{rel}.wav", seconds=0.5)
    assert main(["data", "baseline", "emodb", "--root", str(tmp_path / "emodb"), "--folds", "5"]) == 1
    err = capsys.readouterr().err
    assert "--folds 5" in err and "only 3 speakers" in err and "n_splits" not in err


# ------------------------------------------------------------------------------------------------
# Damaged saved state and corpora
# ------------------------------------------------------------------------------------------------

def test_truncated_weights_and_checkpoints_name_the_file_and_the_fix(saved_dir, tmp_path):
    from sercore import checkpoint

    folder = saved_dir[0]
    truncate(folder / "weights.npz")
    with pytest.raises(ModelError, match="weights.npz is damaged.*save or train this model again"):
        predict.load_model(folder)
    ckpt = tmp_path / "run" / "checkpoint.npz"
    checkpoint.save_pytree(ckpt, {"w": np.ones(1000)}, meta={"epoch": 3})
    truncate(ckpt, 0.7)
    with pytest.raises(ModelError, match=r"checkpoint .*checkpoint.npz is damaged.*BadZipFile.*starts afresh"):
        checkpoint.load_pytree(ckpt, {"w": np.ones(1000)})
    with pytest.raises(ModelError, match="starts afresh"):
        checkpoint.load_meta(ckpt)


def test_damaged_model_json_and_run_records(saved_dir, tmp_path):
    from sercore.study import collect

    folder = saved_dir[0]
    meta = json.loads((folder / "model.json").read_text())
    del meta["normalizer"]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="model.json lacks 'normalizer'"):
        predict.load_model(folder)
    run = tmp_path / "study" / "runs" / "tiny-f0-s0"
    run.mkdir(parents=True)
    (run / "result.json").write_text('{"run_id": "tiny-f0-s0", "val_u')
    with pytest.raises(DataError, match=r"result.json is damaged.*delete the run folder .*tiny-f0-s0"):
        collect(tmp_path / "study")
    with pytest.raises(ModelError, match="result.json is damaged"):
        predict.resolve_model_dir(tmp_path / "study")
    (run / "result.json").write_text('{"run_id": "tiny-f0-s0"}')
    (run / "predictions.parquet").write_bytes(b"PAR1 cut off")
    with pytest.raises(DataError, match="predictions.parquet is damaged"):
        collect(tmp_path / "study")


def test_data_info_says_incomplete_and_truncated(tmp_path, wav_writer, capsys):
    root = tmp_path / "emodb"
    for i, rel in enumerate(("03a01Wa", "08a02Na", "16b10Td")):
        wav_writer(root / "wav" / f"{rel}.wav", seconds=1.0, seed=i)
    truncate(root / "wav" / "08a02Na.wav")
    with pytest.warns(UserWarning, match=r"08a02Na.wav \(header 1.00 s, holds 0.50 s\).*data fetch emodb --force"):
        assert main(["data", "info", "emodb", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "INCOMPLETE: found 3 of the 535 files of the emodb release (532 missing)" in out
    assert "TRUNCATED: 1 file(s)" in out and f"{root / 'wav' / '08a02Na.wav'}: header 1.00 s, holds 0.50 s" in out


def test_feature_extraction_names_a_silent_corpus_file(tmp_path, data_dir):
    import pandas as pd

    from sercore.features import FeatureConfig, extract_features

    good = write(tmp_path / "good.wav", speech_like(0.5))
    silent = write(tmp_path / "silent.wav", np.zeros(SR // 2, np.float32))
    df = pd.DataFrame({"path": [str(good), str(silent)], "utt_id": ["good", "silent"], "corpus": "toy"})
    with pytest.raises(AudioError, match="silent.wav: holds no speech.*leave it out of the corpus"):
        extract_features(df, FeatureConfig(n_mels=16, duration=0.5, n_fft=512, hop_length=256), progress=False)
