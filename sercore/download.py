"""Download and install corpora: ``fetch("emodb")`` puts EmoDB into ``data/raw/emodb``.

What :func:`fetch` does, step by step, and what it guarantees:

1. Streams the archive with :mod:`urllib` into ``data/downloads/<file>.part`` (progress bar), and
   renames it to ``data/downloads/<file>`` only once it is complete and its checksum matches. A
   download that fails, is cut off, or does not match leaves no file behind.
2. Records the archive's SHA-256 in ``<file>.sha256`` beside it and prints it.
3. Extracts into a temporary folder next to the destination (rejecting entries that would escape
   it), checks the layout, loads the corpus once, and only then renames the folder into place;
   a corpus that was already there is replaced only with ``force=True`` and only after the new
   one has passed every check.

What is verified:

- RAVDESS: the archive's MD5 against the value Zenodo publishes for
  ``Audio_Speech_Actors_01-24.zip`` (``bc696df654c87fed845eb13823edef8a``, 208,468,073 bytes).
- EmoDB: the official ``download.zip`` has no published checksum, so its SHA-256 is only recorded.
  Instead the extracted ``wav/`` is checked file by file: the MD5 of each of the 535 wavs, written
  as an ``md5sum`` listing, must hash to :data:`EMODB_WAV_MANIFEST_SHA256`, computed from the
  reference copy this project was developed against. ``verify=False`` skips that check.
- Any corpus: every file name parses and every wav header is readable (:func:`load_corpus`).

CREMA-D, TESS and SAVEE cannot be fetched automatically (licences, registration, git-lfs);
:func:`fetch` raises a :class:`DownloadError` saying where to get them and where to put them.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import config
from .errors import CorpusError, DownloadError, SercoreError

__all__ = ["ARCHIVES", "EMODB_WAV_MANIFEST_SHA256", "Archive", "download_file", "emodb_manifest",
           "extract_zip", "fetch", "file_digests"]

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Archive:
    """An official corpus archive.

    Attributes
    ----------
    url : str
        Where it is downloaded from.
    filename : str
        Its name under ``data/downloads/``.
    md5, sha256 : str or None
        Published checksum (None where the publisher gives none).
    size : int or None
        Published size in bytes.
    """

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


ARCHIVES: dict[str, Archive] = {
    # No checksum is published for EmoDB's download.zip; the extracted wav/ is verified instead.
    "emodb": Archive("http://emodb.bilderbar.info/download/download.zip", "download.zip"),
    # Zenodo record 1188976 lists md5 and size for each file.
    "ravdess": Archive("https://zenodo.org/record/1188976/files/Audio_Speech_Actors_01-24.zip",
                       "Audio_Speech_Actors_01-24.zip",
                       md5="bc696df654c87fed845eb13823edef8a", size=208_468_073),
}

#: SHA-256 of the ``md5sum``-style listing ("<md5>  wav/<name>\\n", sorted by name) of EmoDB's
#: 535 wav files, from the reference copy (which passes its own ``md5sum -c MD5SUMS``).
EMODB_WAV_MANIFEST_SHA256 = "e079cca51808d7eb133ec95e9e9a67302b4d870edb12540d3592c943352664f1"


def _say(message: str, verbose: bool) -> None:
    if verbose:
        print(message, flush=True)


def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """MD5 and SHA-256 of a file, read in chunks.

    Parameters
    ----------
    path : path-like
        File to hash.

    Returns
    -------
    dict
        ``{"md5": hex, "sha256": hex}``.

    Examples
    --------
    >>> from sercore.download import file_digests
    >>> file_digests("data/downloads/download.zip")["sha256"]     # doctest: +SKIP
    '...'
    """
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _check_digests(digests: dict[str, str], *, md5: str | None, sha256: str | None,
                   what: str, fix: str) -> None:
    for algo, expected in (("md5", md5), ("sha256", sha256)):
        if expected and digests[algo].lower() != expected.lower():
            raise DownloadError(f"checksum mismatch for {what}: {algo} {digests[algo]}, expected "
                                f"{expected.lower()}. {fix}")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def download_file(url: str, path: str | os.PathLike, *, md5: str | None = None,
                  sha256: str | None = None, size: int | None = None,
                  progress: bool = True) -> dict[str, str]:
    """Stream ``url`` to ``path`` atomically, checking size and checksums.

    Bytes go to ``<path>.part``, which becomes ``path`` only when the download is complete and
    matches; on any failure (network, cut-off, mismatch, Ctrl-C) the ``.part`` file is removed.

    Parameters
    ----------
    url : str
        ``http(s)://`` or ``file://`` URL.
    path : path-like
        Final file name.
    md5, sha256 : str, optional
        Expected checksum(s); None means unknown (not checked).
    size : int, optional
        Expected size in bytes (else the server's Content-Length, if any, is checked).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``{"md5": hex, "sha256": hex}`` of the downloaded file.

    Raises
    ------
    DownloadError
        Unreachable URL, HTTP error, a download cut off midway, or a checksum mismatch.

    Examples
    --------
    >>> from sercore.download import download_file
    >>> download_file("https://zenodo.org/record/1188976/files/Audio_Speech_Actors_01-24.zip",
    ...               "ravdess.zip", md5="bc696df654c87fed845eb13823edef8a")  # doctest: +SKIP
    """
    from tqdm import tqdm  # not tqdm.auto: without ipywidgets it warns in every notebook

    from . import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    manual = (f"Check your network connection and retry, or download {url} by hand (e.g. in a "
              f"browser) and either install it with `--archive path/to/{path.name}` (Python: "
              f"fetch(..., archive=...)) or save it as {path} and run the same command again.")
    md5_hash, sha_hash = hashlib.md5(), hashlib.sha256()
    received, done = 0, False
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"sercore/{__version__}"})
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(f"cannot download {url}: {reason}. {manual}") from exc
        with response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            expected = size if size is not None else (int(length) if length else None)
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=path.name, disable=not progress, leave=False) as bar:
                try:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
                        md5_hash.update(chunk)
                        sha_hash.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                except Exception as exc:  # IncompleteRead, ConnectionReset, timeouts ...
                    raise DownloadError(f"download of {url} was cut off after {received:,} bytes "
                                        f"({type(exc).__name__}: {exc}); nothing was kept. "
                                        f"{manual}") from exc
        if expected is not None and received != expected:
            raise DownloadError(f"download of {url} is incomplete: got {received:,} of "
                                f"{expected:,} bytes; nothing was kept. {manual}")
        digests = {"md5": md5_hash.hexdigest(), "sha256": sha_hash.hexdigest()}
        _check_digests(digests, md5=md5, sha256=sha256, what=url,
                       fix=f"The file was removed. Retry later; if it persists the server's copy "
                           f"differs from the expected release. {manual}")
        os.replace(part, path)
        done = True
        return digests
    finally:
        if not done:
            part.unlink(missing_ok=True)


def _safe_members(zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    """Members to extract; raises on entries that would land outside the target (zip-slip)."""
    members = []
    for info in zf.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise DownloadError(f"{archive} holds an unsafe entry {name!r} that would be written "
                                "outside the corpus folder; refusing to extract it. Get the "
                                "archive from the official source.")
        if parts and parts[0] == "__MACOSX":
            continue
        members.append(info)
    return members


def extract_zip(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a zip archive into a fresh temporary folder beside ``dest`` (zip-slip safe).

    Parameters
    ----------
    archive : path-like
        The zip file.
    dest : path-like
        The folder the contents are meant for; the temporary folder is created in its parent so
        that moving it into place is a rename on the same file system.

    Returns
    -------
    pathlib.Path
        The temporary folder (the caller moves or deletes it). When the archive wraps everything
        in one top folder, that is still inside it: see :func:`fetch` for how it is unwrapped.

    Raises
    ------
    DownloadError
        Not a zip file, a corrupt member, or an entry with an absolute or ``..`` path.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    except OSError as exc:
        raise DownloadError(f"cannot write into {dest.parent} ({exc}); choose another folder "
                            "(--dest, or $SERCORE_DATA_DIR) or fix its permissions") from exc
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in _safe_members(zf, archive):
                zf.extract(info, tmp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive} is not a readable zip archive ({exc}); delete it and "
                            "download it again (`sercore data fetch ... --force`)") from exc
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"extracting {archive} into {dest.parent} failed ({exc}); check free "
                            "disk space and permissions, then run the same command again") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _layout_ok(name: str, folder: Path) -> bool:
    if name == "emodb":
        return (folder / "wav").is_dir()
    if name == "ravdess":
        return any(p.is_dir() and p.name.startswith("Actor_") for p in folder.glob("Actor_*"))
    return folder.is_dir() and any(folder.iterdir())


def _content_root(name: str, folder: Path) -> Path:
    """The folder holding the corpus layout: ``folder`` or the single folder wrapping it."""
    if _layout_ok(name, folder):
        return folder
    entries = [p for p in folder.iterdir() if p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and _layout_ok(name, entries[0]):
        return entries[0]
    expected = {"emodb": "a wav/ folder", "ravdess": "Actor_XX/ folders"}[name]
    raise DownloadError(f"the archive does not hold {name}'s layout ({expected}); found "
                        f"{sorted(p.name for p in entries)[:10]}. Check that it is the official "
                        f"{ARCHIVES[name].filename}.")


def emodb_manifest(folder: str | os.PathLike) -> str:
    """``md5sum``-style listing of an EmoDB folder's ``wav/`` files, sorted by name.

    Parameters
    ----------
    folder : path-like
        Folder holding ``wav/``.

    Returns
    -------
    str
        One line ``"<md5>  wav/<name>\\n"`` per wav; its SHA-256 is compared with
        :data:`EMODB_WAV_MANIFEST_SHA256`.

    Examples
    --------
    >>> import hashlib
    >>> from sercore.download import emodb_manifest, EMODB_WAV_MANIFEST_SHA256
    >>> text = emodb_manifest("../shared/data/emodb")                          # doctest: +SKIP
    >>> hashlib.sha256(text.encode()).hexdigest() == EMODB_WAV_MANIFEST_SHA256  # doctest: +SKIP
    True
    """
    wavs = sorted(Path(folder, "wav").glob("*.wav"), key=lambda p: p.name)
    return "".join(f"{file_digests(p)['md5']}  wav/{p.name}\n" for p in wavs)


def _verify_emodb(folder: Path) -> None:
    listing = emodb_manifest(folder)
    digest = hashlib.sha256(listing.encode()).hexdigest()
    if digest != EMODB_WAV_MANIFEST_SHA256:
        n = listing.count("\n")
        raise DownloadError(f"the extracted EmoDB wav/ ({n} files) does not match the reference "
                            f"release (535 files, manifest sha256 {EMODB_WAV_MANIFEST_SHA256[:16]}"
                            "...): files are missing, extra or altered. Download the official "
                            "download.zip again (--force); if you are sure your copy is the "
                            "official one, skip this check with --no-verify (verify=False).")


def _manual_message(name: str) -> str:
    from .corpora import CORPORA

    info = CORPORA[name]
    return (f"sercore cannot download {name} ({info.title}) automatically. Get it from "
            f"{info.homepage}: {info.how_to_get}. Expected layout inside data/raw/{name}/ (or "
            f"${config.corpus_env_var(name)}): {info.layout}.")


def fetch(name: str, dest: str | os.PathLike | None = None, *, url: str | None = None,
          sha256: str | None = None, md5: str | None = None,
          archive: str | os.PathLike | None = None, force: bool = False, verify: bool = True,
          progress: bool = True) -> Path:
    """Download (or install from a local archive) a corpus into its data folder.

    Parameters
    ----------
    name : {"emodb", "ravdess"}
        Corpus to fetch. ``"cremad"``, ``"tess"`` and ``"savee"`` raise a
        :class:`DownloadError` explaining how to obtain them by hand.
    dest : path-like, optional
        Corpus folder to create. Default: where :func:`sercore.corpora.load_corpus` looks
        (``$SERCORE_<CORPUS>_DIR``, else ``data/raw/<name>``).
    url : str, optional
        Download from here instead of the official URL (a mirror, or ``file://``).
    sha256, md5 : str, optional
        Expected checksum of the archive. Default: the published one (RAVDESS md5); None for
        EmoDB, whose archive has no published checksum (its SHA-256 is recorded and printed).
    archive : path-like, optional
        Install from this local zip instead of downloading (e.g. one downloaded in a browser).
    force : bool
        Re-download and replace a corpus that is already present.
    verify : bool
        For EmoDB, check the extracted ``wav/`` against :data:`EMODB_WAV_MANIFEST_SHA256`.
    progress : bool
        Show a progress bar and print what happens.

    Returns
    -------
    pathlib.Path
        The corpus folder, ready for :func:`sercore.corpora.load_corpus`.

    Raises
    ------
    DownloadError
        Network failure, cut-off download, checksum mismatch, bad archive, or a corpus that
        cannot be fetched automatically. Nothing already in place is changed.
    CorpusError
        Unknown corpus name.

    Examples
    --------
    >>> from sercore.download import fetch
    >>> fetch("emodb")                                          # doctest: +SKIP
    PosixPath('.../data/raw/emodb')
    >>> fetch("emodb", archive="~/Downloads/download.zip")      # doctest: +SKIP
    """
    from .corpora import CORPORA, corpus_dir, load_corpus

    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r}; valid names: {', '.join(CORPORA)}")
    if name in ("synthetic", "synthetic-small"):
        raise DownloadError(f"{name} is generated, not downloaded: run `sercore data synth"
                            f"{' --size small' if name == 'synthetic-small' else ''}`")
    if name not in ARCHIVES:
        raise DownloadError(_manual_message(name))
    spec = ARCHIVES[name]
    target = Path(dest).expanduser().resolve() if dest is not None else corpus_dir(name)[0]

    if target.exists() and not force:
        if _layout_ok(name, target):
            _say(f"{name} is already present at {target}; nothing to do "
                 "(use --force to download and replace it).", progress)
            return target
        if not target.is_dir() or any(target.iterdir()):
            raise DownloadError(f"{target} exists but does not look like {name}; move it away, "
                                "or pass --force to replace it.")

    if md5 is None and sha256 is None:
        md5, sha256 = spec.md5, spec.sha256
    if archive is not None:
        zip_path = _check_local_archive(spec, Path(archive), md5=md5, sha256=sha256,
                                        progress=progress)
    else:
        zip_path = _download_archive(spec, url, md5=md5, sha256=sha256, force=force,
                                     progress=progress)

    tmp = extract_zip(zip_path, target)
    try:
        content = _content_root(name, tmp)
        if name == "emodb" and verify:
            _verify_emodb(content)
            _say("verified: wav/ matches the reference EmoDB release (535 files, per-file md5)",
                 progress)
        try:
            table = load_corpus(name, root=content)
        except SercoreError as exc:
            raise DownloadError(f"the extracted {name} does not load: {exc}") from exc
        _install(content, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _say(f"{name}: {len(table)} utterances from {table['speaker'].nunique()} speaker(s) "
         f"installed in {target}", progress)
    return target


def _checksum_note(md5: str | None, sha256: str | None) -> str:
    if md5 or sha256:
        return f"matches the expected {'md5' if md5 else 'sha256'}"
    return "no published checksum to compare with"


def _check_local_archive(spec: Archive, path: Path, *, md5: str | None, sha256: str | None,
                         progress: bool) -> Path:
    """A zip the user downloaded by hand: checked where it lies, never moved or changed."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise DownloadError(f"archive {path} does not exist; pass the path of the downloaded "
                            f"{spec.filename}")
    digests = file_digests(path)
    _check_digests(digests, md5=md5, sha256=sha256, what=str(path),
                   fix=f"It is not the expected {spec.filename}; download it again from "
                       f"{spec.url}.")
    if not zipfile.is_zipfile(path):
        raise DownloadError(f"{path} is not a zip archive; download the official "
                            f"{spec.filename} from {spec.url}")
    _say(f"sha256 {digests['sha256']}  {path.name} ({_checksum_note(md5, sha256)})", progress)
    return path


def _download_archive(spec: Archive, url: str | None, *, md5: str | None, sha256: str | None,
                      force: bool, progress: bool) -> Path:
    """Download to ``data/downloads`` (or reuse a complete earlier one); record its sha256."""
    path = config.data_dir() / "downloads" / spec.filename
    if path.is_file() and url is None and not force:
        _say(f"using the archive downloaded earlier: {path}", progress)
        digests = file_digests(path)
        _check_digests(digests, md5=md5, sha256=sha256, what=str(path),
                       fix="Delete it, or run again with --force to download it afresh.")
        if not zipfile.is_zipfile(path):
            raise DownloadError(f"{path} is not a zip archive; delete it, or run again with "
                                "--force to download it afresh")
    else:
        source = url or spec.url
        _say(f"downloading {source}\n         -> {path}", progress)
        digests = download_file(source, path, md5=md5, sha256=sha256,
                                size=spec.size if url is None else None, progress=progress)
        if not zipfile.is_zipfile(path):  # e.g. an HTML error page served instead of the archive
            path.unlink()
            raise DownloadError(f"{source} is not a zip archive (removed). Download the official "
                                f"{spec.filename} from {spec.url} by hand and install it with "
                                f"--archive path/to/{spec.filename}.")
    _write_text_atomic(path.with_name(path.name + ".sha256"), f"{digests['sha256']}  {path.name}\n")
    _say(f"sha256 {digests['sha256']}  {path.name} ({_checksum_note(md5, sha256)}; recorded in "
         f"{path.name}.sha256)", progress)
    return path


def _install(content: Path, target: Path) -> None:
    """Move ``content`` to ``target``; an existing ``target`` is kept until the move succeeded."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(content, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
