"""The Django permissions of the registry, one place for the API and the admin (groups in
migration agents_app/0003)."""

VIEW = "agents_app.view_agent"
CHANGE = "agents_app.change_agent"
ARCHIVE = "agents_app.archive_agent"
PUBLISH = "agents_app.publish_agent"
AUDIT = "events.view_event"
MANAGE_TOKENS = "agents_app.change_apitoken"
