"""sercore's exception types.

Every error sercore raises on bad input is a :class:`SercoreError` whose message names the file or
thing at fault and says what to do about it. Catch ``SercoreError`` to handle all of them.
"""
from __future__ import annotations


class SercoreError(Exception):
    """Base class of every error sercore raises deliberately."""


class CorpusError(SercoreError):
    """Unknown corpus, missing corpus folder, or a file name outside the corpus's naming scheme."""


class AudioError(SercoreError):
    """An audio file that cannot be read or holds no samples.

    Attributes
    ----------
    path : str
        The offending file.
    """

    def __init__(self, path, message: str):
        self.path = str(path)
        self.reason = message
        super().__init__(f"{path}: {message}")

    def __reduce__(self):  # survive pickling across process pools
        return (type(self), (self.path, self.reason))


class DownloadError(SercoreError):
    """A download that failed, was cut off, or did not match its checksum."""


class DataError(SercoreError):
    """A damaged data artifact: a run record, a results or predictions table, a truncated audio file
    in a batch. The message names the file and how to rebuild it."""


class CacheError(SercoreError):
    """A feature cache that is stale or unreadable."""


class ConfigError(SercoreError):
    """An invalid parameter, profile or model name."""


class ModelError(SercoreError):
    """A missing or unusable saved model."""


class RunError(SercoreError):
    """Runs of a study that failed under a parallel executor (after their retries) while the others
    finished.

    Attributes
    ----------
    failures : dict
        ``{run_id: "ErrorType: message"}``.
    study : sercore.study.Study or None
        The study's tables with the runs that did finish.
    """

    def __init__(self, message: str, failures: dict | None = None, study=None):
        super().__init__(message)
        self.failures = dict(failures or {})
        self.study = study

    def __reduce__(self):
        return (type(self), (str(self), self.failures, None))
