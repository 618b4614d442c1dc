"""The OpenAPI schema and Swagger UI: generated cleanly, served anonymously, complete, no CDN."""

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS

SCHEMA = "/api/v1/schema/"
DOCS = "/api/v1/docs/"
PROBLEM = "application/problem+json"

# Every operation of API.md (and the labels list it adds), by path and method.
OPERATIONS = {
    "/api/v1/agents/": {"get", "post"},
    "/api/v1/agents/{name}/": {"get", "put", "patch", "delete"},
    "/api/v1/agents/{name}/restore/": {"post"},
    "/api/v1/agents/{name}/revert/": {"post"},
    "/api/v1/agents/{name}/revisions/": {"get"},
    "/api/v1/agents/{name}/revisions/{revision}/": {"get"},
    "/api/v1/agents/{name}/diff/": {"get"},
    "/api/v1/agents/{name}/blame/": {"get"},
    "/api/v1/agents/{name}/labels/": {"get"},
    "/api/v1/agents/{name}/labels/{label}/": {"put", "delete"},
    "/api/v1/diff/": {"get"},
    "/api/v1/permissions/report/": {"get"},
    "/api/v1/events/": {"get"},
    "/api/v1/events/{position}/": {"get"},
    "/api/v1/projections/": {"get"},
    "/api/v1/projections/{name}/rebuild/": {"post"},
    "/api/v1/healthz": {"get"},
    "/api/v1/readyz": {"get"},
    "/api/v1/labels/{label}/policy/": {"get", "put"},
    "/api/v1/promotions/": {"get"},
    "/api/v1/promotions/{request_id}/": {"get"},
    "/api/v1/promotions/{request_id}/approve/": {"post"},
    "/api/v1/promotions/{request_id}/reject/": {"post"},
    "/api/v1/promotions/{request_id}/withdraw/": {"post"},
    "/api/v1/webhooks/": {"get", "post"},
    "/api/v1/webhooks/{webhook_id}/": {"get", "patch", "delete"},
    "/api/v1/webhooks/{webhook_id}/deliveries/": {"get"},
    "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver/": {"post"},
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def served_schema(client) -> dict:
    response = client.get(SCHEMA)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    return yaml.safe_load(response.content)


def test_the_schema_generates_and_validates_without_a_warning(tmp_path):
    GENERATOR_STATS.reset()  # warnings count per process: only this generation's may fail it
    out = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    assert yaml.safe_load(out.read_text())["paths"]


def test_the_schema_is_served_anonymously_and_lists_every_operation_of_the_contract(served_schema):
    assert served_schema["openapi"].startswith("3.")
    operations = {
        path: {method for method in item if method in HTTP_METHODS}
        for path, item in served_schema["paths"].items()
    }
    assert operations == OPERATIONS  # nothing missing, and the root probes are not listed twice


def test_the_schema_documents_bearer_tokens_and_every_guarded_operation_accepts_them(served_schema):
    assert served_schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    for path, item in served_schema["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS or path.endswith(("/healthz", "/readyz")):
                continue
            assert {"bearerAuth": []} in operation["security"], (method, path)
            assert "401" in operation["responses"], (method, path)


def test_every_documented_error_is_a_problem_body(served_schema):
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, item in served_schema["paths"].items():
        if path.endswith(("/healthz", "/readyz")):
            continue  # plain JSON: a probe's 503 lists the failed checks
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            errors = {code: response for code, response in operation["responses"].items() if int(code) >= 400}
            assert {"400", "401", "403", "406", "429"} <= errors.keys(), (method, path)
            for code, response in errors.items():
                assert response["content"] == {PROBLEM: {"schema": problem_ref}}, (method, path, code)


def test_lists_are_documented_as_pages_with_a_next_link(served_schema):
    paths = served_schema["paths"]
    for path in ("/api/v1/agents/", "/api/v1/agents/{name}/revisions/", "/api/v1/events/"):
        ref = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        page = served_schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert set(page["required"]) == {"results", "next"}, path
        assert page["properties"]["results"]["type"] == "array"


def test_swagger_ui_is_served_anonymously_from_local_static_files_only(client):
    response = client.get(DOCS)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page
    assert not re.search(r"(?:https?:)?//[\w.-]+\.\w", page), "the page references another host"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file of the project"
    assert f'"{SCHEMA}"' in page  # the UI loads our schema
