"""The API reference served at /docs: one self-contained HTML page generated from the OpenAPI schema.

FastAPI's Swagger UI loads its scripts and styles from a CDN and shows a blank page offline; this
page has inline CSS, no script and no URL to another host, so it works on a LAN without internet.
Every string taken from the schema is HTML-escaped (a description may hold '<').
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Collection, Mapping
from html import escape
from typing import Any

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

STYLE = """
  :root { --fg: #1d2433; --muted: #5b6475; --line: #d5dae3; --accent: #2458c6; --bad: #b3261e; --bg: #f6f7f9; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
         background: var(--bg); }
  header, main { max-width: 1100px; margin: 0 auto; padding: 0.75rem 1rem; }
  h1 { font-size: 1.3rem; margin: 0.4rem 0 0.1rem; overflow-wrap: anywhere; }
  h2 { font-size: 1.15rem; margin: 1.4rem 0 0.5rem; }
  h3 { font-size: 1.05rem; margin: 0 0 0.4rem; overflow-wrap: anywhere; }
  h4 { font-size: 0.95rem; margin: 0.8rem 0 0.3rem; color: var(--muted); }
  p { margin: 0.3rem 0; }
  a { color: var(--accent); }
  a:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
  .hint { color: var(--muted); font-size: 0.9rem; }
  .note { background: #eef3fd; border: 1px solid #c9d7f5; border-radius: 6px; padding: 0.5rem 0.75rem;
          margin: 0.5rem 0; font-size: 0.95rem; }
  nav p { margin: 0.6rem 0 0.2rem; font-weight: 600; color: var(--muted); font-size: 0.9rem; }
  nav ul { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 0.3rem 1rem; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 0.8rem; margin: 0 0 1rem;
          min-width: 0; }
  .method { display: inline-block; min-width: 3.6rem; text-align: center; font-size: 0.8rem; font-weight: 700;
            color: #fff; background: var(--accent); border-radius: 4px; padding: 0.05rem 0.35rem;
            margin-right: 0.4rem; }
  .method.get { background: #2f7d4f; }
  code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.9em;
         overflow-wrap: anywhere; }
  pre { background: #1d2433; color: #f6f7f9; border-radius: 6px; padding: 0.6rem 0.75rem; margin: 0.3rem 0;
        white-space: pre-wrap; overflow-wrap: anywhere; }
  table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
  th, td { text-align: left; vertical-align: top; padding: 0.3rem 0.5rem 0.3rem 0; border-bottom: 1px solid var(--line);
           overflow-wrap: anywhere; }
  th { color: var(--muted); font-weight: 600; overflow-wrap: normal; }
  .required { color: var(--bad); font-size: 0.85rem; }
  @media (max-width: 600px) {
    header, main { padding: 0.5rem; }
    thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
    table, tbody, tr, td { display: block; width: 100%; }
    tr { border-bottom: 1px solid var(--line); padding: 0.3rem 0; }
    td { border: 0; padding: 0.05rem 0; }
    td:empty { display: none; }
    td::before { content: attr(data-label) ": "; color: var(--muted); font-size: 0.85rem; }
  }
"""


def reference_html(schema: Mapping[str, Any], *, base_url: str, swagger_url: str | None = None,
                   schema_url: str | None = None, keyed: Collection[tuple[str, str]] = ()) -> str:
    """The page for an OpenAPI 3 `schema`. `base_url` goes into the curl examples only; `swagger_url`
    and `schema_url` are same-server links; `keyed` holds the (path, METHOD) pairs that need a bearer key."""
    info = schema.get("info", {})
    operations = [(path, method, item[method]) for path, item in schema.get("paths", {}).items()
                  for method in METHODS if method in item]
    components = schema.get("components", {}).get("schemas", {})
    title = str(info.get("title", "API"))
    endpoint_links = "".join(f'<li><a href="#{_op_id(path, method)}"><code>{method.upper()} {_esc(path)}</code>'
                             "</a></li>" for path, method, _ in operations)
    schema_links = "".join(f'<li><a href="#{_schema_id(name)}">{_esc(name)}</a></li>' for name in components)
    notes = ["This reference is generated from the server's own OpenAPI schema and needs no internet access."]
    if swagger_url:
        notes.append(f'The interactive <a href="{_esc(swagger_url)}">Swagger UI</a> loads its scripts from '
                     "cdn.jsdelivr.net: it needs internet access in the browser.")
    if schema_url:
        notes.append(f'The machine-readable schema: <a href="{_esc(schema_url)}">{_esc(schema_url)}</a>.')
    if keyed:
        notes.append("Endpoints marked <em>key</em> need the header <code>Authorization: Bearer KEY</code>, "
                     "KEY being the first line of the server's <code>--api-key-file</code>.")
    parts = [
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}: API reference</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        "<header>", f"<h1>{_esc(title)}: API reference</h1>",
        f'<p class="hint">OpenAPI {_esc(schema.get("openapi", "?"))} · version {_esc(info.get("version", "?"))}</p>',
        _paragraphs(info.get("description")), f'<div class="note">{"<br>".join(notes)}</div>',
        '<nav aria-label="Contents"><p>Endpoints</p><ul>', endpoint_links, "</ul>",
        "<p>Schemas</p><ul>", schema_links, "</ul></nav>", "</header>", "<main>",
        '<h2 id="endpoints">Endpoints</h2>',
        *(_operation(path, method, op, base_url=base_url.rstrip("/"), keyed=(path, method.upper()) in keyed)
          for path, method, op in operations),
        '<h2 id="schemas">Schemas</h2>',
        *(_component(name, body) for name, body in components.items()),
        "</main>", "</body>", "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def type_html(schema: Mapping[str, Any]) -> str:
    """A JSON schema as short text: `integer (1 to 1000) | null`, `array of <a>PredictResponse</a>`, `file`."""
    if not schema:
        return "any"
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f'<a href="#{_schema_id(name)}">{_esc(name)}</a>'
    for key, joiner in (("anyOf", " | "), ("oneOf", " | "), ("allOf", " &amp; ")):
        if key in schema:
            return joiner.join(type_html(choice) for choice in schema[key])
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{_esc(json.dumps(value))}</code>" for value in schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return "object" if "properties" in schema or "additionalProperties" in schema else "any"
    if isinstance(kind, list):
        return " | ".join(type_html({**schema, "type": one}) for one in kind)
    if kind == "array":
        return "array of " + type_html(schema.get("items", {}))
    if kind == "string" and schema.get("format") == "binary":
        return "file"
    text = _esc(kind) + (f" ({_esc(schema['format'])})" if "format" in schema else "")
    bounds = _bounds(schema)
    return f"{text} ({bounds})" if bounds else text


def curl_example(path: str, method: str, operation: Mapping[str, Any], *, base_url: str, keyed: bool) -> str:
    """A command line calling the operation: required query parameters as placeholders, a file per
    multipart field (`file`, or two `files`), the bearer header when `keyed`."""
    words = ["curl"]
    if method != "get" and not _multipart_fields(operation):
        words.append(f"-X {method.upper()}")
    if keyed:
        words.append('-H "Authorization: Bearer $KEY"')
    for name, field, _ in _multipart_fields(operation):
        count = 2 if field.get("type") == "array" else 1
        words.extend(f"-F {name}=@image{i + 1 if count > 1 else ''}.jpg" for i in range(count))
    query = "&".join(f"{p['name']}=<{p['name']}>" for p in operation.get("parameters", [])
                     if p.get("in") == "query" and p.get("required"))
    url = base_url + re.sub(r"\{(\w+)\}", r"<\1>", path) + (f"?{query}" if query else "")
    words.append(shlex.quote(url))
    if len(_multipart_fields(operation)) > 1:  # `file` and `files` are alternatives: one example each
        single = [w for w in words if "files=" not in w]
        several = [w for w in words if not w.startswith("-F file=")]
        return " ".join(single) + "\n" + " ".join(several)
    return " ".join(words)


def _operation(path: str, method: str, op: Mapping[str, Any], *, base_url: str, keyed: bool) -> str:
    out = [f'<section class="card" id="{_op_id(path, method)}" aria-labelledby="{_op_id(path, method)}-h">',
           f'<h3 id="{_op_id(path, method)}-h"><span class="method {method}">{method.upper()}</span> '
           f"<code>{_esc(path)}</code>{' · <em>key</em>' if keyed else ''}</h3>"]
    if op.get("summary"):
        out.append(f"<p><strong>{_text(op['summary'])}</strong></p>")
    out.append(_paragraphs(op.get("description")))
    parameters = op.get("parameters", [])
    if parameters:
        rows = [(f"<code>{_esc(p.get('name', '?'))}</code>{_required(p.get('required'))}"
                 f"<br><span class=hint>{_esc(p.get('in', ''))}</span>",
                 type_html(p.get("schema", {})), _default(p.get("schema", {})),
                 _text(p.get("description") or p.get("schema", {}).get("description", "")))
                for p in parameters]
        out += ["<h4>Parameters</h4>", _table(("name", "type", "default", "description"), rows)]
    body = op.get("requestBody")
    if body:
        out.append(f"<h4>Request body{_required(body.get('required'))}</h4>")
        out.append(_paragraphs(body.get("description")))
        for media, content in body.get("content", {}).items():
            fields = _multipart_fields(operation=op) if media == "multipart/form-data" else []
            out.append(f"<p><code>{_esc(media)}</code>"
                       f"{'' if fields else ': ' + type_html(content.get('schema', {}))}</p>")
            if fields:
                rows = [(f"<code>{_esc(name)}</code>{_required(required)}", type_html(field),
                         _text(field.get("description", ""))) for name, field, required in fields]
                out.append(_table(("field", "type", "description"), rows))
    rows = []
    for status, response in sorted(op.get("responses", {}).items(), key=lambda item: (not item[0].isdigit(), item[0])):
        content = response.get("content", {})
        answer = "<br>".join(f"{type_html(c.get('schema', {}))} <span class=hint>({_esc(media)})</span>"
                             for media, c in content.items()) or "<span class=hint>not described</span>"
        rows.append((f"<code>{_esc(status)}</code>", _text(response.get("description", "")), answer))
    out += ["<h4>Responses</h4>", _table(("status", "meaning", "body"), rows)]
    out += ["<h4>Example</h4>",
            f'<pre class="curl">{_esc(curl_example(path, method, op, base_url=base_url, keyed=keyed))}</pre>',
            "</section>"]
    return "\n".join(part for part in out if part)


def _component(name: str, body: Mapping[str, Any]) -> str:
    out = [f'<section class="card" id="{_schema_id(name)}"><h3><code>{_esc(name)}</code></h3>',
           _paragraphs(body.get("description"))]
    properties = body.get("properties", {})
    if properties:
        required = set(body.get("required", ()))
        rows = [(f"<code>{_esc(field)}</code>", type_html(spec), "yes" if field in required else "no",
                 _text(spec.get("description", ""))) for field, spec in properties.items()]
        out.append(_table(("field", "type", "required", "description"), rows))
    else:
        out.append(f"<p>{type_html(body)}</p>")
    out.append("</section>")
    return "\n".join(part for part in out if part)


def _multipart_fields(operation: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], bool]]:
    """(name, schema, required) of each field of the operation's multipart body."""
    content = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
    if not content:
        return []
    schema = content.get("schema", {})
    required = set(schema.get("required", ()))
    return [(name, field, name in required) for name, field in schema.get("properties", {}).items()]


def _table(headings: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A table of `rows` (HTML cells) under `headings`, without the columns that are empty in every row."""
    kept = [i for i in range(len(headings)) if any(row[i] for row in rows)]
    headings, rows = tuple(headings[i] for i in kept), [tuple(row[i] for i in kept) for row in rows]
    head = "".join(f'<th scope="col">{h}</th>' for h in headings)
    body = "".join("<tr>" + "".join(f'<td data-label="{h}">{cell}</td>' for h, cell in zip(headings, row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bounds(schema: Mapping[str, Any]) -> str:
    low = schema.get("minimum", schema.get("minLength", schema.get("minItems")))
    high = schema.get("maximum", schema.get("maxLength", schema.get("maxItems")))
    text = " to ".join(_esc(str(v)) for v in (low, high) if v is not None)
    if low is not None and high is None:
        text = f"≥ {text}"
    elif high is not None and low is None:
        text = f"≤ {text}"
    for key, sign in (("exclusiveMinimum", ">"), ("exclusiveMaximum", "<")):
        if isinstance(schema.get(key), (int, float)) and not isinstance(schema.get(key), bool):
            text = ", ".join(filter(None, (text, _esc(f"{sign} {schema[key]}"))))
    return text


def _default(schema: Mapping[str, Any]) -> str:
    return f"<code>{_esc(json.dumps(schema['default']))}</code>" if "default" in schema else "—"


def _required(required: object) -> str:
    return ' <span class="required">required</span>' if required else ""


def _paragraphs(text: object) -> str:
    if not text:
        return ""
    return "".join(f"<p>{_text(block)}</p>" for block in re.split(r"\n\s*\n", str(text).strip()))


def _text(text: object) -> str:
    """Escaped text, `backquoted` words as <code> (safe: the escaping removed every '<')."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(str(text)))


def _esc(text: object) -> str:
    return escape(str(text), quote=True)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _op_id(path: str, method: str) -> str:
    return f"op-{method}-{_slug(path) or 'root'}"


def _schema_id(name: str) -> str:
    return f"schema-{_slug(name)}"
