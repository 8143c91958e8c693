"""Bad input on every route of the OpenAPI document: negative and huge numbers, values outside
every enum, malformed dates, bodies that are not UTF-8, headers with bytes no one sends. Each is
a 4xx problem naming the parameter, the server stays healthy, and nothing is stored.

The document is walked, so a route added later is covered without a test written for it."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from launcher import Platform, new_space

PROBLEM = "application/problem+json"
BODY_METHODS = {"post", "put", "patch"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    env = {"MLPLANE_SERVING_LOCAL_SERVER": "off"}
    platform = Platform(Path(tmp_path_factory.mktemp("bad-everywhere")), env)
    platform.start()
    yield platform
    platform.stop()


@pytest.fixture(scope="module")
def setup(platform: Platform) -> Iterator[tuple[httpx.Client, str, dict]]:
    with platform.admin() as admin:
        space = new_space(admin, "bad-everywhere")
        yield admin, space, admin.get("/openapi.json").json()


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    return [
        (method, path, op)
        for path, ops in sorted(doc["paths"].items())
        for method, op in sorted(ops.items())
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [resolve(doc, s) for s in schema[key] if s.get("type") != "null"]
            if len(options) == 1:
                return options[0]
    return schema


def bad_values(schema: dict) -> list[str]:
    """Values a parameter of `schema` must refuse."""
    kind = schema.get("type")
    if "enum" in schema:
        return ["zz-not-one-of-them"]
    if kind == "integer":
        values = ["not-a-number", "1.5", str(10**30)]
        if "minimum" in schema or "exclusiveMinimum" in schema:
            values.append("-1")
        return values
    if kind == "boolean":
        return ["perhaps"]
    if schema.get("format") == "date-time":
        return ["yesterday", "2026-13-45T25:61:00Z"]
    return []


def url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", secrets.token_hex(8), path)


def query_cases(doc: dict) -> list[tuple[str, str, str, str]]:
    cases = []
    for method, path, op in operations(doc):
        for param in op.get("parameters", []):
            if param["in"] != "query":
                continue
            for value in bad_values(resolve(doc, param.get("schema", {}))):
                cases.append((method, path, param["name"], value))
    return cases


def stored(platform: Platform) -> int:
    tail = platform.cli("events", "tail")
    assert tail.returncode == 0, tail.stderr
    return len(tail.stdout.splitlines())


def assert_problem(response: httpx.Response, where: str) -> dict:
    assert 400 <= response.status_code < 500, f"{where}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == PROBLEM, where
    body = response.json()
    assert body["status"] == response.status_code and body["detail"], where
    return body


def test_every_query_parameter_refuses_values_outside_its_type(platform: Platform, setup):
    admin, space, doc = setup
    before = stored(platform)
    cases = query_cases(doc)
    assert len(cases) > 40  # the walk found the parameters
    unnamed = []
    for method, path, name, value in cases:
        response = admin.request(
            method, url(path), params={name: value}, headers={"X-Space-ID": space}
        )
        where = f"{method.upper()} {path}?{name}={value}"
        body = assert_problem(response, where)
        if response.status_code == 422 and name not in str(body.get("errors", body["detail"])):
            unnamed.append(where)
    assert unnamed == []
    assert admin.get("/readyz").status_code == 200
    assert stored(platform) == before


def test_every_body_that_is_not_utf8_json_is_refused(platform: Platform, setup):
    admin, space, doc = setup
    before = stored(platform)
    for method, path, op in operations(doc):
        if method not in BODY_METHODS or "requestBody" not in op:
            continue
        content = op["requestBody"].get("content", {})
        if "application/json" not in content:
            continue
        for raw in (b'{"name": "\xff\xfe"}', b"\x00\x00", b'{"name": "a", }'):
            response = admin.request(
                method,
                url(path),
                content=raw,
                headers={"content-type": "application/json", "X-Space-ID": space},
            )
            assert_problem(response, f"{method.upper()} {path} with {raw!r}")
    assert admin.get("/readyz").status_code == 200
    assert stored(platform) == before


@pytest.mark.parametrize("value", [b"\xff\xfe", b"space\x7f", b"a" * 5000, b"a b"])
def test_a_space_header_no_client_would_send_is_a_4xx(setup, value: bytes):
    admin, _, _ = setup
    response = admin.get("/api/v1/trainings", headers={"X-Space-ID": value})
    assert_problem(response, repr(value))
