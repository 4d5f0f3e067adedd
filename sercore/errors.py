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
