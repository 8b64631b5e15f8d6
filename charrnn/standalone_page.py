"""What the two standalone pages charrnn writes share (`charrnn inspect`'s page and the sampler page of
`charrnn export --format html`): the head, with charrnn's output stamp and a Content-Security-Policy that allows no
network request, HTML escaping, JSON that stays inside its <script> element, and filling a template's
__PLACEHOLDERS__ in one pass."""

from __future__ import annotations

import json
import re

from charrnn.safe_files import output_stamp


def page_head(title: str, kind: str, *, wasm: bool = False, data_images: bool = False) -> str:
    """From <!doctype html> to </title>. The stamp in the first lines makes the page charrnn's own (a later --out
    may replace it, safe_files.py); the policy lets the page run its inline script (and compile WebAssembly with
    `wasm`, show data: images with `data_images`) and load nothing."""
    csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'" + (
        " 'wasm-unsafe-eval'" if wasm else "") + ("; img-src data:" if data_images else "")
    return (f"<!doctype html>\n<!-- {output_stamp(kind)} -->\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\"\n      content=\"{csp}\">\n"
            f"<title>{escape_html(title)}</title>")


def escape_html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def script_json(data: dict) -> str:
    """Compact JSON (ASCII, no NaN) that stays inside its <script> element whatever the strings in it hold."""
    blob = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return blob.replace("</", "<\\/").replace("<!--", "<\\!--")


def fill(template: str, parts: dict[str, str]) -> str:
    """Each __NAME__ of `parts` in `template` replaced in one pass: what is put in is never searched again (a run
    may be named __SCRIPT__)."""
    pattern = "__(" + "|".join(map(re.escape, parts)) + ")__"
    return re.sub(pattern, lambda m: parts[m.group(1)], template)
