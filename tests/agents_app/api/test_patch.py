"""PATCH applies the merge patch to the log's newest content, never to a lagging view's (issue 13,
defect 1): a revision the views have not applied yet survives a PATCH made after it."""

import pytest
from django.test import override_settings

from agents_app import services
from agents_app.selectors import agent_get
from events.models import Event
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENT = "/api/v1/agents/reviewer/"


def _revise_while_the_views_lag(body: str, description: str = "Reviews code") -> None:
    """Store revision 2 with the views left at revision 1: read-your-writes off and the queued
    catch-up never runs (the test's transaction never commits and nothing captures it)."""
    agent = agent_get(name="reviewer")
    with override_settings(PROJECTION_READ_YOUR_WRITES=False):
        services.agent_revise(
            agent_id=agent.agent_id,
            content=agent_text("reviewer", description=description, body=body),
            context=services.ChangeContext(actor="other", source="api", reason="r2"),
            expected_version=1,
        )
    assert agent_get(name="reviewer").stream_version == 1  # the view lags


def _stored_contents() -> list[str]:
    return [event.data["content"] for event in Event.objects.order_by("position")]


def test_a_patch_with_the_version_the_412_named_keeps_the_revision_the_view_had_not_applied(
    editor_api, created
):
    _revise_while_the_views_lag("Edited by someone else.\n")

    stale = editor_api.patch(AGENT, {"frontmatter": {"model": "opus"}}, HTTP_IF_MATCH='"1"')
    problem = assert_problem(stale, 412, "stale-version")
    retried = editor_api.patch(
        AGENT, {"frontmatter": {"model": "opus"}}, HTTP_IF_MATCH=f'"{problem["current_version"]}"'
    )

    assert retried.status_code == 200, retried.content
    expected = agent_text("reviewer", extra="model: opus\n", body="Edited by someone else.\n")
    assert retried.json()["content"] == expected
    assert _stored_contents()[-1] == expected
    assert retried["ETag"] == '"3"'


@pytest.mark.parametrize(
    "if_match", ["*", '"2"'], ids=["if-match-star", "the-log-version-while-the-view-is-stale"]
)
def test_a_patch_against_a_stale_view_changes_only_what_it_names(editor_api, created, if_match):
    _revise_while_the_views_lag("Edited by someone else.\n", description="Reviews diffs")

    response = editor_api.patch(
        AGENT, {"body": "Patched body.\n", "frontmatter": {"color": "red"}}, HTTP_IF_MATCH=if_match
    )

    assert response.status_code == 200, response.content
    stored = _stored_contents()
    assert len(stored) == 3
    assert stored[-1] == agent_text(
        "reviewer", description="Reviews diffs", extra="color: red\n", body="Patched body.\n"
    )


def test_a_frontmatter_patch_keeps_a_body_only_the_log_has(editor_api, created):
    _revise_while_the_views_lag("Only in the log so far.\n")

    response = editor_api.patch(AGENT, {"frontmatter": {"color": "red"}}, HTTP_IF_MATCH="*")

    assert response.status_code == 200, response.content
    assert _stored_contents()[-1] == agent_text(
        "reviewer", extra="color: red\n", body="Only in the log so far.\n"
    )


def test_an_invalid_patch_stores_nothing(editor_api, created):
    response = editor_api.patch(AGENT, {"frontmatter": {"description": None}}, HTTP_IF_MATCH='"1"')

    assert_problem(response, 422)
    assert Event.objects.count() == 1
