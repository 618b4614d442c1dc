"""The API fixtures (users per role, the committing client) for the hostile-input tests."""

from tests.agents_app.api.conftest import _fresh_throttles, api, editor_api, users  # noqa: F401
