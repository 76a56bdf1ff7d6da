"""Error hierarchy: the input is wrong (the user can fix it) versus the tool or knowledge base broke.

Every error carries a one-line message naming the file, line, field or value, and the exit code
the command line uses for it.
"""

from __future__ import annotations

import errno
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes of the ``b12kg`` command (see README)."""

    OK = 0
    FINDINGS = 1  #: a check found problems at or above the fail-on level
    USAGE = 2  #: bad command-line arguments
    INPUT = 3  #: an input file is missing, unreadable or not valid syntax
    INVALID_DATA = 4  #: patient data breaks the patient shapes, units or dates
    KNOWLEDGE_BASE = 5  #: the knowledge base itself is broken
    REASONER = 6  #: the reasoner could not run (for example Java is missing)
    BUSY = 7  #: another load/derive is writing to the embedded store (run the command again later)
    INTERNAL = 10  #: a bug in b12kg (please report it)


class B12kgError(Exception):
    """Base class of every error the project raises on purpose."""

    exit_code: ExitCode = ExitCode.INPUT

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or [message]


class UsageError(B12kgError):
    """A command-line option has a value the command cannot use."""

    exit_code = ExitCode.USAGE


class InputError(B12kgError):
    """An input file is missing, unreadable or syntactically wrong."""

    exit_code = ExitCode.INPUT


class InvalidPatientData(B12kgError):
    """Patient data parses but is not a valid patient record (shapes, units, dates)."""

    exit_code = ExitCode.INVALID_DATA


class KnowledgeBaseError(B12kgError):
    """The ontology, shapes or queries are missing or broken."""

    exit_code = ExitCode.KNOWLEDGE_BASE


class ReasonerError(B12kgError):
    """The OWL reasoner could not run."""

    exit_code = ExitCode.REASONER


class OutputClosed(Exception):
    """The reader of standard output stopped reading (``b12kg export | head``): not an error, exit 0.
    Not an OSError, so that typer's own handling of a closed pipe (exit 1, the findings code) never sees it."""


@contextmanager
def reader_may_stop() -> Iterator[None]:
    """Around writes to standard output: a closed pipe becomes :class:`OutputClosed`."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        raise OutputClosed() from None


_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]")


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (escape sequences, carriage returns, C1 codes)
    and bidirectional overrides written as ``\\xNN`` / ``\\uNNNN``; newlines and tabs kept."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


class EscapingWriter(io.TextIOBase):
    """A text stream (stderr) that writes everything through :func:`printable`: whatever a message
    quotes from the user's data (a FHIR status, a file name, a request path) cannot drive the terminal."""

    def __init__(self, raw) -> None:
        super().__init__()
        self.raw = raw

    @property
    def encoding(self) -> str:  # (click writes to a stream whose encoding it can read)
        return self.raw.encoding

    @property
    def errors(self) -> str | None:
        return self.raw.errors

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def write(self, text: str) -> int:
        self.raw.write(printable(text))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()
