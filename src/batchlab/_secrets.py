"""Passwords in storage URLs: shown masked, stored not at all.

A PostgreSQL storage URL may carry its password (``postgresql://user:pass@host/db``,
or ``?password=pass``). Everything batchlab shows (output, error messages, log lines,
the report) masks it as ``user:***@host``; everything it stores (``config.json``,
``results.json``, the config kept in the storage) drops it, so that another process
connects with the password libpq finds by itself: ``PGPASSWORD`` or ``~/.pgpass``
(docs/distributed.md). :func:`redact_url` is the one function that does both.
"""

from __future__ import annotations

import re

#: Characters that end a URL inside free text (an error message, a ``repr``).
_END = r"\s'\"<>`"
#: ``scheme://user:password@``, read as SQLAlchemy reads it (its parser decides what is
#: sent as the password): the user may hold a raw ``@`` (``me@server``, as some hosted
#: PostgreSQL services name users). The password runs to the *last* ``@`` of the URL,
#: so a password with an unescaped ``@`` (or ``/``, ``?``) is masked whole, never in
#: part; it errs towards masking too much (a raw ``@`` in a password-less URL's query,
#: which SQLAlchemy misreads too: escape it as ``%40``).
_USERINFO = re.compile(
    rf"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://(?P<user>[^:/{_END}]*)):(?P<password>[^{_END}]*)@"
)
#: libpq's ``password`` keyword in a URL's query (``?password=...&...``).
_QUERY = re.compile(rf"(?P<sep>[?&])password=[^&#{_END}]*(?P<next>&?)", re.IGNORECASE)

MASK = "***"


def redact_url(text: str, *, mask: str | None = MASK) -> str:
    """``text`` with the password of every URL in it masked (or, ``mask=None``, removed).

    ``text`` is a URL or any text that holds URLs (an error message). Paths,
    ``journal://`` and ``sqlite:///`` URLs have no password and come back unchanged.

    Args:
        text: a storage URL, or text that may contain some.
        mask: what replaces each password: ``"***"`` where a URL is *shown*; ``None``
            where it is *stored*, which removes the password (and its ``:``) so the
            stored URL still connects with ``PGPASSWORD`` or ``~/.pgpass``.

    Returns:
        ``postgresql://user:***@host/db`` (shown) or ``postgresql://user@host/db``
        (stored) for ``postgresql://user:pass@host/db``.

    Example:
        >>> redact_url("postgresql+psycopg://me:s3cret@db:5432/studies")
        'postgresql+psycopg://me:***@db:5432/studies'
        >>> redact_url("postgresql://me:s3cret@db/studies", mask=None)
        'postgresql://me@db/studies'
    """
    if not isinstance(text, str) or "://" not in text:
        return text

    def userinfo(match: re.Match[str]) -> str:
        if mask is not None:
            return f"{match['head']}:{mask}@"
        return f"{match['head']}@" if match["user"] else match["head"]

    def query(match: re.Match[str]) -> str:
        if mask is not None:
            return f"{match['sep']}password={mask}{match['next']}"
        # Drop the parameter and one separator: "?password=x&a=1" -> "?a=1",
        # "?a=1&password=x" -> "?a=1", "?password=x" -> "".
        return match["sep"] if match["next"] else ""

    return _QUERY.sub(query, _USERINFO.sub(userinfo, text))
