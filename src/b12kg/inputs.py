"""The files a user hands b12kg, read within bounds, and the files it writes, written whole or not at all.

Every limit here is checked before a parser or the mapper spends memory on the input, and every
refusal is one line naming the file (and the value) with a documented exit code. The limits are
the engine's, not the guideline's (docs/clinicians.md, "Input limits"):

* a file read into memory (a patient file, a FHIR file, JSON-LD, a ``.rq`` query) holds at most
  :data:`MAX_FILE_BYTES` (``B12KG_MAX_INPUT_BYTES`` overrides it); Turtle and N-Triples loaded into
  the embedded store stream through the bulk loader and have no size limit;
* a literal or IRI holds at most :data:`MAX_LITERAL_BYTES` (the RDF parsers' token buffer);
* JSON nests at most :data:`MAX_JSON_DEPTH` levels (FHIR resources nest about ten);
* a number is finite, below :data:`MAX_MAGNITUDE` and has at most :data:`MAX_FRACTION_DIGITS` digits
  after the decimal point (what the store compares exactly);
* a date lies between :data:`EARLIEST_DATE` and :data:`LATEST_DATE`, so that calendar arithmetic on it
  (due dates, look-back windows) stays inside the calendar.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO

from b12kg.errors import InputError, UsageError

MAX_FILE_BYTES = 256 * 2**20
MAX_LITERAL_BYTES = 16 * 2**20
MAX_JSON_DEPTH = 100
MAX_MAGNITUDE = Decimal(10) ** 15
MAX_FRACTION_DIGITS = 18
EARLIEST_DATE = date(1800, 1, 1)
LATEST_DATE = date(2999, 12, 31)

_XSD = "http://www.w3.org/2001/XMLSchema#"
NUMERIC_TYPES = tuple(_XSD + t for t in (
    "decimal", "integer", "double", "float", "long", "int", "short", "byte", "nonNegativeInteger",
    "positiveInteger", "nonPositiveInteger", "negativeInteger", "unsignedLong", "unsignedInt",
    "unsignedShort", "unsignedByte"))
DATE_TYPES = (_XSD + "date", _XSD + "dateTime")


def max_file_bytes() -> int:
    """:data:`MAX_FILE_BYTES`, or ``B12KG_MAX_INPUT_BYTES`` when set to a positive whole number."""
    value = os.environ.get("B12KG_MAX_INPUT_BYTES", "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_FILE_BYTES


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def read_input(path: Path) -> bytes:
    """The bytes of a user's input file: it exists, is a file, and is within :func:`max_file_bytes`."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    limit = max_file_bytes()
    try:
        size = path.stat().st_size
        if size > limit:
            raise InputError(f"{path}: {_size(size)} is over the {_size(limit)} b12kg reads into memory "
                             "(set B12KG_MAX_INPUT_BYTES to allow more; Turtle and N-Triples load into a store without limit)")
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:  # grew since stat, or a special file
        raise InputError(f"{path}: over the {_size(limit)} b12kg reads into memory")
    return data


def utf8(data: bytes, path: Path, *, bom: bool = False) -> str:
    """``data`` decoded as UTF-8; a bad byte is an :class:`InputError` naming its line and column."""
    try:
        return data.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(f"{path}:{line}:{column}: not UTF-8 (byte 0x{data[exc.start]:02x}); "
                         "save the file as UTF-8") from None


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")


def check_json(data: bytes, path: Path) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` (or with more brackets left open) or holding
    a string longer than :data:`MAX_LITERAL_BYTES`, before any JSON or JSON-LD parser (which recurse)
    reads it. Other text that is not JSON passes: the parser reports it with its line and column."""
    if len(data) > MAX_LITERAL_BYTES:  # (a shorter file cannot hold a longer string)
        longest = max(map(len, _JSON_STRING.findall(data)), default=0)
        if longest - 2 > MAX_LITERAL_BYTES:
            raise InputError(f"{path}: a JSON string of {_size(longest - 2)} is over the {_size(MAX_LITERAL_BYTES)} "
                             "limit of a literal")
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):  # each pass removes the innermost level of every nest
        shorter = _EMPTY_PAIR.sub(b"", brackets)
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    # Left: nests deeper than the limit, or brackets never closed (or closed by the other kind), which a
    # parser descends into before it finds the end missing. Few of those are a syntax error the parser
    # reports; many are refused here.
    if _EMPTY_PAIR.search(brackets) or brackets.count(b"[") + brackets.count(b"{") > MAX_JSON_DEPTH:
        raise InputError(f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels (or more than "
                         f"{MAX_JSON_DEPTH} brackets left open)")


def number_problem(text: str) -> str | None:
    """Why the number written ``text`` cannot be used (None when it can)."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return "is not a number"
    if not value.is_finite():
        return "is not a finite number"
    if not value.is_zero() and value.adjusted() >= MAX_MAGNITUDE.adjusted():  # (no arithmetic: 1e999999999 is fine)
        return f"is 10^{MAX_MAGNITUDE.adjusted()} or more in magnitude, past the numbers b12kg compares"
    _, digits, exponent = value.as_tuple()
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if not value.is_zero() and -(exponent + trailing_zeros) > MAX_FRACTION_DIGITS:
        return f"has more than {MAX_FRACTION_DIGITS} digits after the decimal point, more than b12kg compares exactly"
    return None


def date_problem(day: date) -> str | None:
    """Why the day cannot be used (None when it can)."""
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        return f"is outside the dates b12kg computes with ({EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()})"
    return None


_LEXICAL = {"decimal": re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"),
            "double": re.compile(r"^([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?INF|NaN)$"),
            "integer": re.compile(r"^[+-]?[0-9]+$")}
_YEAR = re.compile(r"^(-?[0-9]{4,})-")


def check_evaluation_date(day: date) -> None:
    """Refuse an evaluation date (``--as-of``) outside :data:`EARLIEST_DATE` .. :data:`LATEST_DATE`."""
    problem = date_problem(day)
    if problem:
        raise UsageError(f"--as-of {day.isoformat()}: {problem}")


def outside_lexical_space(lexical: str, datatype: str) -> bool:
    """True for a numeric literal outside its datatype's lexical space, such as ``"5e999999999"^^xsd:decimal``
    (a check with no conversion: Python's Decimal would read that one as a billion-digit number)."""
    name = datatype.replace(_XSD, "xsd:")
    kind = {"xsd:decimal": "decimal", "xsd:double": "double", "xsd:float": "double"}.get(name, "integer")
    return not _LEXICAL[kind].match(lexical)


def literal_problem(lexical: str, datatype: str) -> str:
    """Why a numeric or date literal the store could not use is refused."""
    name = datatype.replace(_XSD, "xsd:")
    if datatype in NUMERIC_TYPES:
        kind = {"xsd:decimal": "decimal", "xsd:double": "double", "xsd:float": "double"}.get(name, "integer")
        if not _LEXICAL[kind].match(lexical):
            return f"is not in the {name} lexical space"
        return number_problem(lexical) or f"cannot be read as {name}"
    year = _YEAR.match(lexical)
    if year and not EARLIEST_DATE.year <= int(year.group(1)) <= LATEST_DATE.year:
        return date_problem(date(1, 1, 1)) or ""
    try:
        return date_problem(date.fromisoformat(lexical[:10])) or f"is not a valid {name}"
    except ValueError:
        return f"is not a valid {name}"


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A file written beside ``path`` and renamed onto it once complete: a write that fails part-way
    leaves ``path`` as it was, never a truncated file that looks whole. A folder, a missing parent or a
    read-only place is an :class:`InputError` naming ``path``."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder; name a file to write")
    try:
        f = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(f.name, 0o666 & ~umask)  # as a file opened for writing would be (the temporary one is 0600)
        os.replace(f.name, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(f.name):
            os.unlink(f.name)


def write_output(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` whole (see :func:`replacing`)."""
    with replacing(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
