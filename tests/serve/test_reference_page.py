"""The API reference at /docs: generated from the app's OpenAPI schema, self-contained, escaped, and
its curl examples work when run against the server."""

from __future__ import annotations

import re
import shlex
from html.parser import HTMLParser

import httpx
from fastapi import FastAPI

from cnnkit.inference import Predictor
from cnnkit.serve import ServeSettings, create_app
from cnnkit.serve.reference_page import reference_html, type_html
from serve_helpers import metric, png_bytes, run, serving

KEY = "k3y-0123456789abcdef"
METHODS = ("get", "put", "post", "delete", "patch")


class Sections(HTMLParser):
    """The text of each <section> by its heading, every tag met, and the text of each <pre class=curl>."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, str] = {}
        self.tags: list[tuple[str, dict]] = []
        self.curls: list[str] = []
        self._heading: list[str] | None = None
        self._section: list[str] | None = None
        self._curl: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "section":
            self._section, self._heading = [], None
        elif tag == "h3" and self._section is not None:
            self._heading = []
        elif tag == "pre" and dict(attrs).get("class") == "curl":
            self._curl = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3" and self._heading is not None:
            self._title, self._heading = "".join(self._heading), None
        elif tag == "pre" and self._curl is not None:
            self.curls.append("".join(self._curl))
            self._curl = None
        elif tag == "section" and self._section is not None:
            self.sections[self._title] = "".join(self._section)
            self._section = None

    def handle_data(self, data: str) -> None:
        for part in (self._section, self._heading, self._curl):
            if part is not None:
                part.append(data)


def parse(html: str) -> Sections:
    parser = Sections()
    parser.feed(html)
    return parser


def reference(predictor: Predictor, **settings) -> tuple[dict, str]:
    app = create_app(predictor, ServeSettings(**settings))
    return app.openapi(), reference_html(app.openapi(), base_url="http://serve.test", swagger_url="/docs/swagger",
                                         schema_url="/openapi.json")


def test_every_operation_and_schema_of_the_app_appears(predictor: Predictor) -> None:
    schema, html = reference(predictor)
    sections = parse(html).sections
    operations = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert len(operations) >= 8
    for path, method, op in operations:
        text = sections[f"{method.upper()} {path}"]
        assert op["summary"] in text and op["description"].split("\n")[0].replace("`", "") in text
        for parameter in op.get("parameters", []):
            assert parameter["name"] in text
        for status, response in op["responses"].items():
            assert status in text
            for ref in re.findall(r"#/components/schemas/(\w+)", str(response)):
                assert ref in text, (path, status, ref)
    predict = sections["POST /predict"]
    assert "multipart/form-data" in predict and "filerequired" not in predict
    assert "one image" in predict and "several images (the answer is a list)" in predict
    assert "label or index to explain" in sections["POST /explain"]
    assert "how many classes to answer, best first (default 5)" in predict
    assert "the server process that answered (tells --workers apart)" in sections["InfoResponse"]
    for name, component in schema["components"]["schemas"].items():
        text = sections[name]
        for field in component["properties"]:
            assert field in text, (name, field)
    assert re.search(r"error\s*string\s*yes.*detail\s*any\s*no", sections["ErrorResponse"].replace("\n", " "))


def test_types_read_as_the_schema_says(predictor: Predictor) -> None:
    schema, _ = reference(predictor)
    predict = schema["paths"]["/predict"]["post"]
    top_k = next(p for p in predict["parameters"] if p["name"] == "top_k")
    assert type_html(top_k["schema"]) == "integer (1 to 1000) | null"
    assert type_html(predict["responses"]["200"]["content"]["application/json"]["schema"]) == \
        '<a href="#schema-PredictResponse">PredictResponse</a> | array of <a href="#schema-PredictResponse">' \
        "PredictResponse</a>"
    fields = predict["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert type_html(fields["file"]) == "file" and type_html(fields["files"]) == "array of file"
    assert type_html({"type": "string", "enum": ["a", "<b>"]}) == \
        "one of <code>&quot;a&quot;</code>, <code>&quot;&lt;b&gt;&quot;</code>"
    assert type_html({"type": "number", "exclusiveMinimum": 0}) == "number (&gt; 0)"


def test_no_url_to_another_host_and_nothing_loaded(predictor: Predictor) -> None:
    _, html = reference(predictor)
    page = parse(html)
    assert page.curls and all("http://serve.test/" in curl for curl in page.curls)
    outside_examples = re.sub(r'<pre class="curl">.*?</pre>', "", html, flags=re.DOTALL)
    assert "http://" not in outside_examples and "https://" not in outside_examples
    for tag, attrs in page.tags:
        assert "src" not in attrs and tag not in ("script", "link", "img", "iframe"), (tag, attrs)
        href = attrs.get("href")
        assert href is None or href.startswith("#") or (href.startswith("/") and not href.startswith("//")), href
    assert "@import" not in html and "url(" not in html and 'name="viewport"' in html
    ids = [attrs["id"] for _, attrs in page.tags if "id" in attrs]
    assert len(ids) == len(set(ids)), "anchors are unique"
    targets = {attrs["href"][1:] for _, attrs in page.tags if attrs.get("href", "").startswith("#")}
    assert targets <= set(ids), f"links to missing anchors: {targets - set(ids)}"


def test_schema_strings_are_escaped() -> None:
    hostile = "<script>alert(1)</script> & `x<y`"
    schema = {
        "openapi": "3.1.0", "info": {"title": "<i>t</i>", "version": "1", "description": hostile},
        "paths": {"/a/{id}": {"delete": {
            "summary": "<b>bold</b>", "description": hostile,
            "parameters": [{"name": "q\"><script>", "in": "query", "required": True,
                            "schema": {"type": "string", "default": "</td>"}, "description": hostile}],
            "responses": {"200": {"description": "<ok>", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Odd<Name>"}}}}}}}},
        "components": {"schemas": {"Odd<Name>": {"type": "object", "description": hostile,
                                                 "properties": {"<f>": {"type": "string", "description": hostile}},
                                                 "required": ["<f>"]}}},
    }
    html = reference_html(schema, base_url="http://h'x", swagger_url="/s<", schema_url=None)
    page = parse(html)
    assert "<script>" not in html and "<b>bold" not in html and "<i>t" not in html and "<ok>" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt; &amp; <code>x&lt;y</code>") == 5
    assert not any(tag in ("script", "b", "i", "ok", "f") for tag, _ in page.tags)
    assert {"DELETE /a/{id}", "Odd<Name>"} <= set(page.sections)
    assert "&quot;&gt;&lt;script&gt;" in html and "&lt;/td&gt;" in html and 'href="/s&lt;"' in html
    (curl,) = page.curls
    assert shlex.split(curl) == ["curl", "-X", "DELETE", "http://h'x/a/<id>?q\"><script>=<q\"><script>>"]


def answer_to(curl: str, client: httpx.AsyncClient, image: bytes, key: str = ""):
    """Run one curl example line through `client`: its -H headers, -F uploads and URL."""
    words = shlex.split(curl.replace("$KEY", key))
    assert words[0] == "curl"
    headers, files, method, url = {}, [], "GET", words[-1]
    for flag, value in zip(words[1:-1:2], words[2:-1:2]):
        if flag == "-H":
            name, _, text = value.partition(": ")
            headers[name] = text
        elif flag == "-F":
            field, _, name = value.partition("=@")
            files.append((field, (name, image, "image/png")))
            method = "POST"
        else:
            assert flag == "-X", flag
            method = value
    return client.request(method, url, headers=headers, files=files or None)


def test_the_curl_examples_work_against_the_server(predictor: Predictor) -> None:
    async def scenario():
        async with serving(predictor, host="0.0.0.0", api_key=KEY) as client:
            page = (await client.get("/docs")).text
            answers = {}
            for curl in parse(page).curls:
                for line in curl.splitlines():
                    answers[line] = await answer_to(line, client, png_bytes(5), key=KEY)
            return page, answers

    page, answers = run(scenario)
    statuses = {line: response.status_code for line, response in answers.items()}
    assert len(statuses) == 12, statuses
    assert all(line.startswith("curl ") and "http://serve.test/" in line for line in statuses)
    for line, status in statuses.items():  # an embedding endpoint on a classifier: 409, as documented
        assert status == (409 if re.search(r"/(embed|search)$", line) else 200), (line, status)
    many = next(r for line, r in answers.items() if "files=" in line and line.endswith("/predict"))
    assert isinstance(many.json(), list) and len(many.json()) == 2
    sections = parse(page).sections
    assert "key" in sections["GET /info · key"] and "GET /healthz" in sections and "GET /readyz" in sections
    assert "Bearer" not in sections["GET /healthz"], "health stays open: its example sends no key"


def test_docs_is_the_offline_reference_and_swagger_moved(predictor: Predictor) -> None:
    async def scenario():
        async with serving(predictor, host="0.0.0.0", api_key=KEY) as client:
            answers = [await client.get(path) for path in ("/docs", "/docs/swagger", "/openapi.json")]
            return answers, (await client.get("/metrics", headers={"Authorization": "Bearer " + KEY})).text

    (docs, swagger, openapi), metrics = run(scenario)
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in docs.headers["content-security-policy"]
    assert "POST /predict · key" in parse(docs.text).sections and "needs no internet access" in docs.text
    assert 'href="/docs/swagger"' in docs.text and "cdn.jsdelivr.net" in docs.text
    assert swagger.status_code == 200 and "swagger-ui" in swagger.text and "/openapi.json" in swagger.text
    assert openapi.status_code == 200 and "/predict" in openapi.json()["paths"], "as open as before the key"
    assert metric(metrics, "cnnkit_requests_total", endpoint="/docs", status="200") == 1
    assert metric(metrics, "cnnkit_requests_total", endpoint="/docs/swagger", status="200") == 1


def test_examples_and_links_follow_the_host_and_the_mount(predictor: Predictor) -> None:
    outer = FastAPI()
    outer.mount("/model", create_app(predictor))

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://lan-box:8123") as c:
            return await c.get("/model/docs"), await c.get("/model/docs/swagger")

    docs, swagger = run(scenario)
    assert docs.status_code == 200 and swagger.status_code == 200
    assert "curl -F file=@image.jpg http://lan-box:8123/model/predict" in "\n".join(parse(docs.text).curls)
    assert 'href="/model/docs/swagger"' in docs.text and 'href="/model/openapi.json"' in docs.text
