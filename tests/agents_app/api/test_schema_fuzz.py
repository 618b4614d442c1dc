"""Property-based fuzzing of REST API v1 against its own OpenAPI schema (schemathesis).

The schema is fetched from `/api/v1/schema/` of the WSGI application, in process, and every
operation in it becomes one test (its own database transaction) that calls the application
with generated requests, authenticated as a superuser by bearer token, in a registry that
already holds agents (`reviewer` with three revisions and a `production` label, `writer`,
`planner`). Generated path and query parameters mostly name things that exist (agents,
revisions, refs, labels, event positions, projections), so `/agents/{name}/...` reaches
real data and not only 404s.

Every response must pass these schemathesis checks:

* `not_a_server_error`: no 5xx for anything sent; bad input gets a 4xx problem;
* `status_code_conformance`: the status code is one the schema documents for the operation;
* `content_type_conformance`: the Content-Type is one documented for that status
  (errors: `application/problem+json`);
* `response_schema_conformance`: the body validates against the documented schema;
* `response_headers_conformance`: documented response headers match their schemas;
* `negative_data_rejection`: a request the schema calls invalid is refused with a 4xx. The
  schema marks optional query parameters `allowEmptyValue` (every view reads `?x=` as not
  given), and no undeclared query parameters are generated: views ignore unknown ones;
* `unsupported_method`: a method the schema does not list gets 405 (401/403 tolerated).

Budget: phases examples (the schema's own), coverage (schemathesis' deterministic boundary
and invalid values, unexpected methods) and fuzzing, positive and negative, with
`MAX_EXAMPLES` generated cases per operation; stateful testing is off. Generation is
derandomized (Hypothesis seeds from the test's source) with no example database, so every
run sends the same requests: about 1,300 in all, well under a minute on SQLite or PostgreSQL.

The schema is loaded when the module is collected, not through `schemathesis.pytest.
from_fixture`: schemathesis 4.32's lazy loader uses `Node._nodeid`, gone in pytest 9.2.
Below the fuzz test, what it found is pinned as plain examples.
"""

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import strategies as st
from rest_framework.throttling import SimpleRateThrottle

from agents_app import services
from agents_app.tokens import api_token_create
from events.models import Event
from events.projections import projection_names
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

MAX_EXAMPLES = 30
AGENT_NAMES = ["reviewer", "writer", "planner"]
SEEDED_EVENTS = 6  # what the `token` fixture stores: 3 creations, 2 revisions, 1 label move
REFS = ["1", "2", "latest", "production", "@2999-01-01T00:00:00Z"]
# Query parameters that name agents or revisions, and values that exist.
EXISTING_IN_QUERY = {
    "ref": REFS,
    "from": REFS,
    "to": REFS,
    "left": ["reviewer@1", "reviewer@production", "writer", "planner@latest"],
    "right": ["reviewer", "writer@1"],
    "agent": AGENT_NAMES,
}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.negative_data_rejection,
    schemathesis.checks.unsupported_method,
]
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # The test sends its own bearer token; generated credentials would only add 401s.
            "with-security-parameters": False,
            "allow-extra-parameters": False,
        },
        "phases": {"stateful": {"enabled": False}},
    }
)

# Loaded once, when the module is collected (generating the schema needs no database).
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application(), config=CONFIG)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Point most generated paths at rows that exist; the rest keep their random values."""
    if not path_parameters:
        return st.just(path_parameters)
    existing = {
        "name": projection_names() if "/projections/" in context.operation.path else AGENT_NAMES,
        "revision": [1, 2, 3],
        "label": ["production"],
        "position": list(range(1, SEEDED_EVENTS + 1)),  # ordinals: see the test
    }
    choices = {
        key: st.sampled_from([*existing[key], value])
        for key, value in path_parameters.items()
        if key in existing
    }
    return st.fixed_dictionaries(choices).map(lambda chosen: {**path_parameters, **chosen})


@schema.hook
def flatmap_query(context, query):
    """Likewise for the query parameters that name agents and revisions."""
    if not query:
        return st.just(query)
    choices = {
        key: st.sampled_from([*EXISTING_IN_QUERY[key], value])
        for key, value in query.items()
        if key in EXISTING_IN_QUERY
    }
    return st.fixed_dictionaries(choices).map(lambda chosen: {**query, **chosen})


@pytest.fixture
def _wsgi_requests_keep_the_test_transaction():
    # Django's test client does the same: at the end of a WSGI request Django closes the
    # connection, and with it the transaction the test runs in.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def _unthrottled(settings, monkeypatch):
    # The fuzzer sends hundreds of requests a minute; throttling has its own tests. DRF's
    # throttles read their rates when rest_framework.throttling is imported, hence the patch.
    rates = {"user": "1000000/min", "anon": "1000000/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)


@pytest.fixture
def token(db, django_user_model, django_capture_on_commit_callbacks) -> str:
    """A superuser's bearer token, in a registry with three agents, one with 3 revisions and a label."""
    admin = django_user_model.objects.create_superuser(username="fuzzer", email=None, password=None)
    context = services.ChangeContext(actor="fuzzer", source="cli", reason="seed")
    with django_capture_on_commit_callbacks(execute=True):
        created = {
            name: services.agent_create(
                content=agent_text(name, extra="tools: Read, Grep\n"), context=context
            )
            for name in AGENT_NAMES
        }
        reviewer = created["reviewer"].agent_id
        for version, body in ((1, "Review twice.\n"), (2, "Review thrice.\n")):
            services.agent_revise(
                agent_id=reviewer,
                content=agent_text("reviewer", body=body, extra="model: opus\n"),
                context=context,
                expected_version=version,
            )
        services.agent_label_move(agent_id=reviewer, label="production", revision=2, context=context)
    return api_token_create(user=admin, name="schema fuzz")[1]


@hypothesis.settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@schema.parametrize()
@pytest.mark.usefixtures("_wsgi_requests_keep_the_test_transaction", "_unthrottled")
def test_every_operation_answers_generated_requests_as_its_schema_says(
    case, token, django_capture_on_commit_callbacks
):
    # Positions come from a sequence that PostgreSQL does not roll back between tests: a
    # small generated position names the n-th event of this test's registry.
    position = (case.path_parameters or {}).get("position")
    if isinstance(position, int) and 1 <= position <= SEEDED_EVENTS:
        case.path_parameters["position"] = Event.objects.order_by("position")[position - 1].position
    # Requests commit in production; here their on-commit hooks (the projections' catch-up)
    # run at the end of each call instead, so later requests read what earlier ones wrote.
    with django_capture_on_commit_callbacks(execute=True):
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


# ----------------------------------------------------------------------------------------------
# What the fuzzer found, pinned as plain examples (fixed unless marked xfail)
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def admin_api(api, users):
    api.as_user(users["admin"])
    response = api.post("/api/v1/agents/", {"content": agent_text("reviewer"), "reason": "first"})
    assert response.status_code == 201, response.content
    return api


def test_an_empty_unified_diff_still_says_it_is_text_x_diff(admin_api):
    response = admin_api.get("/api/v1/agents/reviewer/diff/?format=unified")  # revision 1: nothing before

    assert response.status_code == 200
    assert response["Content-Type"] == "text/x-diff; charset=utf-8"
    assert response.content == b""


@pytest.mark.parametrize("param", ["at", "since", "until"])
def test_a_time_offset_postgresql_cannot_store_is_read_in_utc_and_an_instant_before_year_1_is_a_400(
    admin_api, param
):
    path = "/api/v1/events/" if param != "at" else "/api/v1/agents/"

    assert admin_api.get(f"{path}?{param}=2999-01-01T00:00:00-20:00").status_code == 200
    body = assert_problem(
        admin_api.get(f"{path}?{param}=0001-01-01T00:00:00%2B23:00"), 400, "invalid-parameter"
    )
    assert body["errors"] == [{"field": param, "message": "is out of range"}]


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/agents/?q=%00",
        "/api/v1/agents/?label=a%00",
        "/api/v1/events/?actor=%00",
        "/api/v1/events/?type=%00",
    ],
)
def test_a_nul_in_a_query_parameter_is_a_400_not_a_database_error(admin_api, query):
    assert_problem(admin_api.get(query), 400, "invalid-parameter")


def test_a_method_an_endpoint_lacks_is_a_405_listing_the_allowed_ones_not_a_403(admin_api):
    response = admin_api.put("/api/v1/agents/reviewer/restore/", {})

    assert_problem(response, 405)
    assert response["Allow"] == "POST, OPTIONS"


@pytest.mark.postgres
def test_a_ref_timestamp_with_an_offset_postgresql_cannot_store_is_not_a_server_error(admin_api):
    assert admin_api.get("/api/v1/agents/reviewer/?ref=@2999-01-01T00:00:00-20:00").status_code == 200


def test_a_frontmatter_string_with_an_escaped_nul_is_refused_before_it_is_stored(admin_api):
    content = '---\nname: nul\ndescription: "a\\0b"\n---\nBody.\n'

    assert_problem(admin_api.post("/api/v1/agents/", {"content": content}), 422, "invalid-document")
