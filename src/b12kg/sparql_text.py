"""SPARQL query text as a SPARQL parser reads it: codepoint escapes, comments, strings, IRIs.

Two uses, both about text b12kg did not write:

* :func:`where_groups`: where a query's ``WHERE { … }`` groups open, found on tokens, so a ``VALUES``
  block is never placed inside a string literal, an IRI or a comment that happens to read ``WHERE {``.
* :func:`refuse_federation`: a check strictly more conservative than any SPARQL parser: after the
  codepoint escapes every parser decodes first (``\\u0053ERVICE`` is ``SERVICE``), the word SERVICE
  anywhere — keyword, string, IRI or comment, whatever ends a comment (``\\n`` or ``\\r``) — refuses the
  query. No parser can see federation where this check sees none.

>>> where_groups('SELECT * WHERE { BIND("WHERE {x}" AS ?a) } # WHERE {')
[16]
>>> decode_escapes(r'\\u0053ERVICE')
'SERVICE'
"""

from __future__ import annotations

import re

__all__ = ["FederationRefused", "decode_escapes", "query_form", "refuse_federation", "tokens", "where_groups"]

_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
_TOKEN = re.compile(
    r"""(?P<comment>\#[^\r\n]*)
      | (?P<string>'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"
                  |'(?:[^'\\\r\n]|\\.)*'|"(?:[^"\\\r\n]|\\.)*")
      | (?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<space>\s+)
      | (?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
_SERVICE = re.compile(r"service", re.IGNORECASE)


class FederationRefused(ValueError):
    """The query names SERVICE somewhere: it could reach another endpoint."""


def decode_escapes(text: str) -> str:
    """The query with its ``\\uXXXX`` / ``\\UXXXXXXXX`` codepoint escapes decoded, as SPARQL 1.1 (19.2)
    does before parsing. An escape naming no character (a surrogate, past U+10FFFF) stays as written."""
    def one(match: re.Match) -> str:
        point = int(match.group(1) or match.group(2), 16)
        if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            return match.group(0)
        return chr(point)

    return _ESCAPE.sub(one, text)


def tokens(text: str):
    """(kind, start, end) for each token of ``text`` (escapes already decoded): comment, string, iri,
    word, space or other (a single character)."""
    for match in _TOKEN.finditer(text):
        yield match.lastgroup, match.start(), match.end()


def where_groups(text: str) -> list[int]:
    """Offsets just after the ``{`` that opens each ``WHERE`` group (the query's and each sub-select's):
    the WHERE keyword and its brace as tokens, never inside a string, an IRI or a comment."""
    offsets: list[int] = []
    after_where = False
    for kind, start, end in tokens(text):
        if kind in ("space", "comment"):
            continue
        if after_where and kind == "other" and text[start] == "{":
            offsets.append(end)
        after_where = kind == "word" and text[start:end].upper() == "WHERE"
    return offsets


_FORMS = ("SELECT", "CONSTRUCT", "DESCRIBE", "ASK")


def query_form(text: str) -> str | None:
    """SELECT, CONSTRUCT, DESCRIBE or ASK: the first such keyword after the prologue (a word followed by
    ``:`` is a prefix, not a keyword); None when there is none (the engine then reports the syntax)."""
    text = decode_escapes(text)
    seen = [(kind, start, end) for kind, start, end in tokens(text) if kind not in ("space", "comment")]
    for n, (kind, start, end) in enumerate(seen):
        word = text[start:end].upper()
        if kind == "word" and word in _FORMS:
            following = seen[n + 1] if n + 1 < len(seen) else None
            if following is None or text[following[1]:following[2]] != ":":
                return word
    return None


def refuse_federation(text: str) -> None:
    """Raise :class:`FederationRefused` when the word SERVICE appears anywhere in the decoded query."""
    if _SERVICE.search(decode_escapes(text)):
        raise FederationRefused("federated queries (SERVICE) are not allowed on this endpoint; the word SERVICE "
                                "is refused anywhere in the query text, strings and comments included")
