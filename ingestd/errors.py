"""The exception tree of ingestd. Callers catch by what they do about it.

    IngestError                 root; its docstring is the default message
    ├── ConfigError             the configuration cannot be used: fix it and restart
    ├── NotFound                an id, slug or name that does not exist
    ├── Conflict                the thing already exists (unique slug, username, …)
    ├── UploadRejected          an incoming file is refused; ``reason`` is for the operator
    │   └── DuplicateUpload     the file is a duplicate of ``existing_call_id``
    ├── ManifestError           a CSV manifest cannot be used at all
    ├── StoreError              storage failed; nothing was stored
    └── ProviderError           a transcriber/analyzer failed; ``retryable`` says if trying
                                again later may help
"""

from __future__ import annotations


class IngestError(Exception):
    """ingestd could not complete the operation."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or self.__class__.__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(IngestError):
    """The configuration is invalid."""


class NotFound(IngestError):
    """Not found."""


class Conflict(IngestError):
    """Already exists."""


class UploadRejected(IngestError):
    """The file was rejected."""

    @property
    def reason(self) -> str:
        return self.message


class DuplicateUpload(UploadRejected):
    """The file duplicates a call that already exists."""

    def __init__(self, message: str, existing_call_id: str) -> None:
        super().__init__(message)
        self.existing_call_id = existing_call_id


class ManifestError(IngestError):
    """The CSV manifest cannot be read."""


class StoreError(IngestError):
    """Storing the file failed."""


class ProviderError(IngestError):
    """A provider failed."""

    def __init__(self, message: str | None = None, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
