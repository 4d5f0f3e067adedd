"""``sercore data list|info|fetch|synth`` through :func:`sercore.cli.main`."""
from __future__ import annotations

import re
import zipfile

import pytest

from sercore.cli import main

TINY_EMODB = ["wav/03a01Wa.wav", "wav/03a02Wb.wav", "wav/08a01Na.wav", "wav/16b10Td.wav"]


@pytest.fixture
def tiny_emodb(tmp_path, wav_writer):
    for i, rel in enumerate(TINY_EMODB):
        wav_writer(tmp_path / "emodb" / rel, seconds=0.5 + 0.25 * i, seed=i)
    return tmp_path / "emodb"


def test_info_on_a_small_corpus(tiny_emodb, capsys):
    assert main(["data", "info", "emodb", "--root", str(tiny_emodb)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("emodb: 4 utterances, 3 speakers, 3 emotions")
    assert f"folder: {tiny_emodb}" in out
    emotions = re.findall(r"^\s*(anger|neutral|sadness)\s+(\d+)", out, flags=re.M)
    assert emotions == [("anger", "2"), ("neutral", "1"), ("sadness", "1")]  # sorted descending
    assert re.search(r"^\s*03\s+male\s+2\b", out, flags=re.M)
    assert re.search(r"^\s*female\s+2\s+2$", out, flags=re.M)  # 2 speakers, 2 utterances
    assert "duration (s): min 0.50  mean 0.88  max 1.25  total 3.5" in out


@pytest.mark.emodb
def test_info_on_real_emodb(emodb_dir, capsys):
    assert main(["data", "info", "emodb", "--root", str(emodb_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("emodb: 535 utterances, 10 speakers, 7 emotions")
    counts = re.findall(r"^\s*(anger|boredom|neutral|happiness|fear|sadness|disgust)\s+(\d+)\s",
                        out, flags=re.M)
    assert counts == [("anger", "127"), ("boredom", "81"), ("neutral", "79"), ("happiness", "71"),
                      ("fear", "69"), ("sadness", "62"), ("disgust", "46")]
    assert re.search(r"^\s*female\s+5\s+302$", out, flags=re.M)
    assert re.search(r"^\s*male\s+5\s+233$", out, flags=re.M)
    assert "duration (s): min 1.23  mean 2.78  max 8.98" in out


def test_info_skip_bad(tiny_emodb, capsys):
    (tiny_emodb / "wav" / "09a01Fa.wav").write_bytes(b"")
    assert main(["data", "info", "emodb", "--root", str(tiny_emodb)]) == 1
    assert "09a01Fa.wav" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="09a01Fa.wav"):
        assert main(["data", "info", "emodb", "--root", str(tiny_emodb), "--skip-bad"]) == 0
    assert "4 utterances" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["data", "info", "emodbb"], "unknown corpus 'emodbb'; valid names: emodb, ravdess"),
    (["data", "info", "savee"], "sercore: error: savee not found"),
    (["data", "fetch", "cremad"], "cannot download cremad"),
    (["data", "fetch", "emodb", "--archive", "/no/such.zip"], "/no/such.zip does not exist"),
])
def test_errors_exit_1_with_a_message(argv, message, data_dir, capsys, monkeypatch):
    monkeypatch.delenv("SERCORE_SAVEE_DIR", raising=False)
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_list_shows_where_each_corpus_is_looked_for(tiny_emodb, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("SERCORE_EMODB_DIR", str(tiny_emodb))
    monkeypatch.delenv("SERCORE_RAVDESS_DIR", raising=False)
    assert main(["data", "list"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert list(lines) == ["emodb", "ravdess", "cremad", "tess", "savee", "synthetic",
                           "synthetic-small"]
    assert lines["emodb"][1:4] == ["yes", str(tiny_emodb), "$SERCORE_EMODB_DIR"]
    assert lines["ravdess"][1:4] == ["no", str(data_dir / "raw" / "ravdess"), "default"]


def test_fetch_from_archive(tiny_emodb, tmp_path, data_dir, capsys):
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in TINY_EMODB:
            zf.write(tiny_emodb / rel, rel)
    assert main(["data", "fetch", "emodb", "--archive", str(archive), "--no-verify"]) == 0
    assert "4 utterances" in capsys.readouterr().out
    assert main(["data", "info", "emodb"]) == 0
    assert f"folder: {data_dir / 'raw' / 'emodb'}" in capsys.readouterr().out
    assert main(["data", "fetch", "emodb", "--archive", str(archive)]) == 0
    assert "already present" in capsys.readouterr().out


def test_synth_passes_its_options(tmp_path, monkeypatch, capsys):
    synth = pytest.importorskip("sercore.synth",
                                reason="sercore.synth (SYNTH helper) not there yet")
    calls = []

    def fake_generate(root, *, size="full", seed=0, progress=True):
        calls.append((root, size, seed))
        return root

    monkeypatch.setattr(synth, "generate_corpus", fake_generate)
    assert main(["data", "synth", "--size", "small", "--seed", "3", "--root", str(tmp_path)]) == 0
    assert calls == [(tmp_path.resolve(), "small", 3)]
    assert "synthetic-small corpus (seed 3)" in capsys.readouterr().out


def test_data_without_subcommand_prints_help(capsys):
    assert main(["data"]) == 2
    assert "info" in capsys.readouterr().out


def test_cli_baseline_on_the_small_synthetic_corpus(data_dir, capsys):
    """`sercore data baseline` prints a speaker-independent accuracy computed on the corpus."""
    from sercore.cli import main

    assert main(["data", "baseline", "synthetic-small", "--folds", "2"]) == 0
    out = capsys.readouterr().out
    assert "speaker-independent accuracy per fold" in out
    mean = float(out.split("mean ")[1].split()[0])
    assert 0.0 <= mean <= 1.0
    assert "chance 0.143" in out
