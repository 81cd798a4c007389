"""Render the report's HTML with Jinja2, autoescaping every value.

Every string that comes from a study (names, parameters, failure reasons,
tracebacks) reaches the page through ``{{ ... }}`` and is escaped; nothing from a
study is ever marked safe. The only markup inserted unescaped is the package's own
static style sheet and script, whose SHA-256 hashes form the page's Content
Security Policy, so the browser runs no other script and loads nothing from
outside the file.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

_INNER = re.compile(r"^\s*<(style|script)>(.*)</\1>\s*$", re.DOTALL)


def format_number(value: Any, digits: int = 3) -> str:
    """``1234.5`` -> ``"1,234"``, ``0.01234`` -> ``"0.0123"``, ``None``/NaN -> ``"—"``."""
    if value is None or isinstance(value, bool):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "—"
    if abs(number) >= 10 ** (digits + 1):
        return f"{number:,.0f}"
    return f"{number:.{digits}g}"


def format_interval(value: Any, digits: int = 3) -> str:
    """``(1.0, 2.5)`` -> ``"[1 – 2.5]"``; missing or non-finite -> ``""``."""
    if value is None:
        return ""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        return ""
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{format_number(low, digits)} – {format_number(high, digits)}]"


@cache
def environment() -> Environment:
    """The Jinja2 environment of the report templates (autoescape on, strict undefined)."""
    env = Environment(
        loader=PackageLoader("batchlab.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = format_number
    env.filters["interval"] = format_interval
    return env


def _static(name: str) -> tuple[Markup, str]:
    """A static ``<style>``/``<script>`` template and the CSP source of its content hash."""
    text = environment().get_template(name).render()
    match = _INNER.match(text)
    if match is None:
        raise RuntimeError(f"template {name} must hold exactly one <style> or <script> element")
    digest = hashlib.sha256(match.group(2).encode("utf-8")).digest()
    return Markup(text), "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def render_html(context: dict[str, Any], template: str = "report.html") -> str:
    """The full page for ``context`` (see ``templates/report.html``; ``cbs_report.html``
    is the page of a ``batchlab cbs`` directory without a study)."""
    style, style_hash = _static("_style.html")
    script, script_hash = _static("_script.html")
    csp = (
        "default-src 'none'; img-src data:; "
        f"style-src {style_hash}; script-src {script_hash}; "
        "base-uri 'none'; form-action 'none'"
    )
    page = environment().get_template(template)
    return page.render(**context, style=style, script=script, csp=csp)
