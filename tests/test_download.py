"""fetch(): install from local file:// archives the tests build (tiny wavs with real EmoDB /
RAVDESS names); checksum mismatch, cut-off and unreachable downloads, unsafe archives."""
from __future__ import annotations

import hashlib
import http.client
import io
import urllib.request
import zipfile
from pathlib import Path

import pytest

from sercore import download
from sercore.corpora import load_corpus
from sercore.download import emodb_manifest, fetch
from sercore.errors import CorpusError, DownloadError

EMODB_NAMES = ["03a01Fa", "08a01Na", "16b10Wb"]
ERKENNUNG = ("Nr.\tSatz\terkannt\tnatuerlich\n"
             + "".join(f"{i}\xa0\t{n}.wav\t9{i},00\xa0\t7{i},00\xa0\n"
                       for i, n in enumerate(EMODB_NAMES))).encode("latin-1")


def build_zip(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def wav_bytes(tmp_path: Path, wav_writer, seed: int = 0) -> bytes:
    return wav_writer(tmp_path / "src" / f"{seed}.wav", seconds=0.05, seed=seed).read_bytes()


@pytest.fixture
def emodb_zip(tmp_path, wav_writer, monkeypatch):
    """A miniature EmoDB download.zip; the reference manifest is pointed at its three wavs."""
    files = {f"wav/{n}.wav": wav_bytes(tmp_path, wav_writer, i) for i, n in enumerate(EMODB_NAMES)}
    files["erkennung.txt"] = ERKENNUNG
    files["lablaut/03a01Faxx.lablaut"] = b"labels\n"
    listing = "".join(f"{hashlib.md5(files[f'wav/{n}.wav']).hexdigest()}  wav/{n}.wav\n"
                      for n in sorted(EMODB_NAMES))
    monkeypatch.setattr(download, "EMODB_WAV_MANIFEST_SHA256",
                        hashlib.sha256(listing.encode()).hexdigest())
    return build_zip(tmp_path / "mirror" / "download.zip", files)


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files that an interrupted fetch must not leave behind."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith(".part") or ".extract-" in p.name or ".old-" in p.name)


def test_fetch_emodb_from_url(emodb_zip, data_dir, capsys):
    target = fetch("emodb", url=emodb_zip.as_uri())
    assert target == data_dir / "raw" / "emodb"
    assert sorted(p.name for p in (target / "wav").iterdir()) == [f"{n}.wav" for n in EMODB_NAMES]
    assert (target / "erkennung.txt").is_file() and (target / "lablaut").is_dir()
    df = load_corpus("emodb")
    assert df["utt_id"].tolist() == EMODB_NAMES and df["recognition"].notna().all()

    archive = data_dir / "downloads" / "download.zip"
    sha = hashlib.sha256(emodb_zip.read_bytes()).hexdigest()
    assert archive.read_bytes() == emodb_zip.read_bytes()
    assert (data_dir / "downloads" / "download.zip.sha256").read_text() == f"{sha}  download.zip\n"
    out = capsys.readouterr().out
    assert sha in out and "no published checksum" in out and "3 utterances" in out
    assert leftovers(data_dir) == []


def test_fetch_again_does_nothing_unless_forced(emodb_zip, data_dir, capsys):
    target = fetch("emodb", url=emodb_zip.as_uri(), progress=False)
    marker = target / "marker.txt"
    marker.write_text("mine")
    assert fetch("emodb", url=emodb_zip.as_uri()) == target
    assert "already present" in capsys.readouterr().out and marker.exists()

    fetch("emodb", url=emodb_zip.as_uri(), force=True, progress=False)
    assert not marker.exists() and len(load_corpus("emodb")) == 3
    assert leftovers(data_dir) == []


def test_fetch_reuses_a_complete_earlier_download(emodb_zip, data_dir, capsys, monkeypatch):
    target = fetch("emodb", url=emodb_zip.as_uri(), progress=False)
    for p in sorted(target.rglob("*"), reverse=True):  # the user deletes the extracted corpus
        p.rmdir() if p.is_dir() else p.unlink()
    target.rmdir()

    def no_network(*args, **kwargs):
        raise AssertionError("fetch went to the network although the archive was there")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    fetch("emodb")
    assert "using the archive downloaded earlier" in capsys.readouterr().out
    assert len(load_corpus("emodb")) == 3


def test_fetch_from_local_archive(emodb_zip, data_dir):
    target = fetch("emodb", archive=emodb_zip, progress=False)
    assert len(load_corpus("emodb", root=target)) == 3
    assert not (data_dir / "downloads").exists()  # the user's archive is used where it lies
    with pytest.raises(DownloadError, match="does not exist"):
        fetch("emodb", archive=emodb_zip.with_name("nope.zip"), force=True, progress=False)


def test_fetch_into_explicit_dest_and_wrapped_archive(tmp_path, emodb_zip, data_dir):
    with zipfile.ZipFile(emodb_zip) as src:
        wrapped = build_zip(tmp_path / "wrapped.zip",
                            {f"emodb/{i.filename}": src.read(i) for i in src.infolist()})
    dest = tmp_path / "elsewhere" / "emodb"
    assert fetch("emodb", dest=dest, archive=wrapped, progress=False) == dest
    assert (dest / "wav" / "03a01Fa.wav").is_file() and not (dest / "emodb").exists()


def test_checksum_mismatch_keeps_earlier_corpus(emodb_zip, data_dir):
    target = fetch("emodb", url=emodb_zip.as_uri(), progress=False)
    before = sorted(p.name for p in (target / "wav").iterdir())
    with pytest.raises(DownloadError, match="checksum mismatch.*sha256") as err:
        fetch("emodb", url=emodb_zip.as_uri(), sha256="0" * 64, force=True, progress=False)
    assert emodb_zip.as_uri() in str(err.value) and "--archive" in str(err.value)
    assert sorted(p.name for p in (target / "wav").iterdir()) == before
    assert len(load_corpus("emodb")) == 3
    assert leftovers(data_dir) == []


def test_ravdess_checks_the_published_md5(tmp_path, wav_writer, data_dir):
    names = ["Actor_01/03-01-05-02-01-01-01.wav", "Actor_02/03-01-01-01-02-02-02.wav"]
    zip_path = build_zip(tmp_path / "ravdess.zip",
                         {n: wav_bytes(tmp_path, wav_writer, i) for i, n in enumerate(names)})
    with pytest.raises(DownloadError, match="bc696df654c87fed845eb13823edef8a"):
        fetch("ravdess", url=zip_path.as_uri(), progress=False)
    assert not (data_dir / "raw" / "ravdess").exists() and leftovers(data_dir) == []

    md5 = hashlib.md5(zip_path.read_bytes()).hexdigest()
    target = fetch("ravdess", url=zip_path.as_uri(), md5=md5, progress=False)
    df = load_corpus("ravdess", root=target)
    assert df["emotion"].tolist() == ["anger", "neutral"]


class CutOffResponse(io.BytesIO):
    """A urlopen() result that delivers ``n_ok`` bytes and then fails with ``exc``."""

    def __init__(self, data: bytes, n_ok: int, exc: BaseException):
        super().__init__(data)
        self.n_ok, self.exc = n_ok, exc
        self.headers = {"Content-Length": str(len(data))}

    def read(self, size=-1):
        if self.tell() >= self.n_ok:
            raise self.exc
        return super().read(min(size, self.n_ok - self.tell()))


@pytest.mark.parametrize("exc", [ConnectionResetError("connection reset by peer"),
                                 http.client.IncompleteRead(b"partial"), TimeoutError("timed out")],
                         ids=["reset", "incomplete-read", "timeout"])
def test_cut_off_download_leaves_nothing(exc, emodb_zip, data_dir, monkeypatch):
    data = emodb_zip.read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda *a, **k: CutOffResponse(data, len(data) // 2, exc))
    with pytest.raises(DownloadError, match="cut off after") as err:
        fetch("emodb", url="https://example.org/download.zip", progress=False)
    assert "https://example.org/download.zip" in str(err.value) and "--archive" in str(err.value)
    assert not (data_dir / "downloads" / "download.zip").exists()
    assert not (data_dir / "raw" / "emodb").exists() and leftovers(data_dir) == []


def test_interrupted_download_leaves_nothing(emodb_zip, data_dir, monkeypatch):
    data = emodb_zip.read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda *a, **k: CutOffResponse(data, 100, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        fetch("emodb", url="https://example.org/download.zip", progress=False)
    assert leftovers(data_dir) == [] and not (data_dir / "downloads" / "download.zip").exists()


def test_short_download_without_error_is_caught(emodb_zip, data_dir, monkeypatch):
    data = emodb_zip.read_bytes()
    response = CutOffResponse(data[:-10], len(data), RuntimeError("unreachable"))
    response.headers = {"Content-Length": str(len(data))}
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: response)
    with pytest.raises(DownloadError, match="incomplete"):
        fetch("emodb", url="https://example.org/download.zip", progress=False)
    assert leftovers(data_dir) == [] and not (data_dir / "downloads" / "download.zip").exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/download.zip", "file:///no/such/download.zip"])
def test_unreachable_url(url, data_dir):
    with pytest.raises(DownloadError) as err:
        fetch("emodb", url=url, progress=False)
    msg = str(err.value)
    assert url in msg and "network" in msg and "--archive path/to/download.zip" in msg
    assert str(data_dir / "downloads" / "download.zip") in msg  # where to put a manual download
    assert leftovers(data_dir) == [] and not (data_dir / "raw" / "emodb").exists()


def test_not_a_zip(tmp_path, data_dir):
    page = tmp_path / "download.zip"
    page.write_text("<html>Service unavailable</html>")
    with pytest.raises(DownloadError, match="is not a zip archive"):
        fetch("emodb", url=page.as_uri(), progress=False)
    assert not (data_dir / "downloads" / "download.zip").exists()  # the junk is not kept
    assert leftovers(data_dir) == [] and not (data_dir / "raw" / "emodb").exists()


def test_zip_slip_is_refused(tmp_path, wav_writer, data_dir):
    evil = build_zip(tmp_path / "evil.zip", {"wav/03a01Fa.wav": wav_bytes(tmp_path, wav_writer),
                                            "../../escaped.txt": b"gotcha"})
    with pytest.raises(DownloadError, match="unsafe entry"):
        fetch("emodb", archive=evil, progress=False)
    assert not list(tmp_path.rglob("escaped.txt")) and leftovers(data_dir) == []


def test_wrong_layout_is_refused(tmp_path, wav_writer, data_dir):
    odd = build_zip(tmp_path / "odd.zip", {"audio/03a01Fa.wav": wav_bytes(tmp_path, wav_writer)})
    with pytest.raises(DownloadError, match="layout"):
        fetch("emodb", archive=odd, progress=False)
    assert not (data_dir / "raw" / "emodb").exists() and leftovers(data_dir) == []


def test_emodb_wav_check_rejects_a_different_release(emodb_zip, data_dir, monkeypatch):
    monkeypatch.setattr(download, "EMODB_WAV_MANIFEST_SHA256", "f" * 64)
    with pytest.raises(DownloadError, match="does not match the reference release"):
        fetch("emodb", archive=emodb_zip, progress=False)
    assert not (data_dir / "raw" / "emodb").exists() and leftovers(data_dir) == []
    target = fetch("emodb", archive=emodb_zip, verify=False, progress=False)
    assert len(load_corpus("emodb", root=target)) == 3


def test_existing_unrelated_folder_is_not_overwritten(emodb_zip, data_dir):
    target = data_dir / "raw" / "emodb"
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="does not look like emodb.*--force"):
        fetch("emodb", archive=emodb_zip, progress=False)
    assert (target / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name,where", [("cremad", "CREMA-D"), ("tess", "10.5683/SP2/E8H2MF"),
                                        ("savee", "surrey.ac.uk")])
def test_manual_corpora_explain_how_to_get_them(name, where, data_dir):
    with pytest.raises(DownloadError) as err:
        fetch(name, progress=False)
    assert where in str(err.value) and f"data/raw/{name}" in str(err.value)


def test_fetch_bad_names():
    with pytest.raises(CorpusError, match="valid names"):
        fetch("emodbb")
    with pytest.raises(DownloadError, match="sercore data synth"):
        fetch("synthetic")


@pytest.mark.emodb
def test_reference_manifest_matches_real_emodb(emodb_dir):
    listing = emodb_manifest(emodb_dir)
    assert listing.count("\n") == 535
    assert hashlib.sha256(listing.encode()).hexdigest() == download.EMODB_WAV_MANIFEST_SHA256
    if (emodb_dir / "MD5SUMS").is_file():  # the same listing md5sum wrote
        md5sums = (emodb_dir / "MD5SUMS").read_text().splitlines()
        assert sorted(listing.splitlines()) == sorted(md5sums)
