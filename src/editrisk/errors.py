"""Errors that editrisk raises on bad input; the CLI turns them into exit code 2."""

from __future__ import annotations


class EditriskError(Exception):
    """Bad input or an unusable setting, with a message a user can act on."""


class UnsupportedArchitectureError(EditriskError):
    """The model's family has no entry in the architecture table."""


class InputError(EditriskError):
    """Malformed input: the message names the file, record and field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        record: int | None = None,
        field: str | None = None,
    ) -> None:
        where = []
        if file is not None:
            where.append(str(file))
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.file, self.record, self.field = file, record, field


class FileError(EditriskError):
    """A file or folder that cannot be read or written (permissions, a file where a folder
    is needed, a full disk): the message names the path and the reason."""

    @classmethod
    def of(cls, err: OSError, path: object = None) -> FileError:
        """`err` as one line naming its path (or `path`)."""
        where = err.filename if err.filename is not None else path
        return cls(f"cannot access {where}: {err.strerror or err}")
