"""Security headers on every response: Content-Security-Policy (django-csp), X-Frame-Options,
X-Content-Type-Options, Referrer-Policy, Cross-Origin-Opener-Policy, and HSTS over TLS only.

The policy allows no inline script or style: every admin page must have none, and the
Swagger UI page marks its two with the per-request nonce. A real browser (Chromium, like
tests/agents_app/test_admin_browser.py) loads the admin and the Swagger UI and must report no
policy violation.
"""

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client

from agents_app import services
from agents_app.diff import DIFF_CSS
from tests.conftest import IN_CI, agent_text

AGENTS = "/api/v1/agents/"
DOCS = "/api/v1/docs/"
ADMIN_AGENT = "/admin/agents_app/agentcurrent/"
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
UNSAFE = ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:", "https:")


def policy(response) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in directives, f"{name} twice in {header}"
        directives[name] = sources
    return directives


def assert_strict_policy(response) -> dict[str, list[str]]:
    directives = policy(response)
    assert directives["default-src"] == ["'none'"]
    for directive in ("script-src", "style-src"):
        sources = directives[directive]
        assert "'self'" in sources
        assert not set(sources) & set(UNSAFE), f"{directive}: {sources}"
        assert all(source == "'self'" or source.startswith("'nonce-") for source in sources), sources
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert "object-src" not in directives  # default-src 'none' covers plugins
    return directives


def assert_security_headers(response) -> None:
    for name, value in HEADERS.items():
        assert response[name] == value, name
    assert_strict_policy(response)


@pytest.fixture
def admin_client(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", None, None))
    return client


@pytest.fixture
def agent(db, django_capture_on_commit_callbacks):
    """An agent with two revisions and a label, so every admin page has something to show."""
    context = services.ChangeContext(actor="alice", source="cli", reason="seed")
    with django_capture_on_commit_callbacks(execute=True):
        change = services.agent_create(content=agent_text("headers"), context=context)
        services.agent_revise(
            agent_id=change.agent_id, content=agent_text("headers", body="v2\n"), context=context
        )
        services.agent_label_move(agent_id=change.agent_id, label="production", revision=1, context=context)
    return change.agent_id


# ----------------------------------------------------------------------------------------------
# The headers, on each kind of response
# ----------------------------------------------------------------------------------------------
def test_an_admin_page_carries_every_security_header(admin_client, agent):
    response = admin_client.get(f"{ADMIN_AGENT}{agent}/change/")

    assert response.status_code == 200
    assert_security_headers(response)
    assert not any(source.startswith("'nonce-") for source in policy(response)["script-src"])


def test_the_admin_login_page_carries_every_security_header(client):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert_security_headers(response)


def test_an_api_response_carries_every_security_header(admin_client, agent):
    response = admin_client.get(f"{AGENTS}headers/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert_security_headers(response)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (AGENTS, 401),  # DRF's problem: no credentials
        (f"{AGENTS}?at=yesterday", 401),
        ("/api/v1/no-such-thing/", 404),  # the URLconf's handler404
    ],
)
def test_a_problem_response_carries_every_security_header(client, db, path, status):
    response = client.get(path)

    assert response.status_code == status
    assert response["Content-Type"].startswith("application/problem+json")
    assert_security_headers(response)


def test_a_validation_problem_carries_every_security_header(admin_client):
    response = admin_client.post(AGENTS, {"content": 42}, content_type="application/json")

    assert response.status_code == 422
    assert response["Content-Type"].startswith("application/problem+json")
    assert_security_headers(response)


def test_the_health_probe_and_static_files_carry_the_policy(client, db):
    probe = client.get("/healthz")
    stylesheet = client.get("/static/agents_app/admin.css")

    assert probe.status_code == 200
    assert_security_headers(probe)
    assert stylesheet.status_code == 200
    assert stylesheet["X-Content-Type-Options"] == "nosniff"
    assert_strict_policy(stylesheet)


# ----------------------------------------------------------------------------------------------
# Pages hold no inline code the policy would block
# ----------------------------------------------------------------------------------------------
class _InlineCode(HTMLParser):
    """Inline scripts and styles (with their nonce), style attributes and event handlers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str | None]] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "style" or (
            tag == "script" and "src" not in attributes and attributes.get("type") != "application/json"
        ):
            self.blocks.append((tag, attributes.get("nonce")))
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.attributes.append(f"<{tag} {name}=...> at line {self.getpos()[0]}")


def inline_code(response) -> _InlineCode:
    parser = _InlineCode()
    parser.feed(response.content.decode())
    parser.close()
    return parser


ADMIN_PAGES = [
    "/admin/",
    ADMIN_AGENT,
    f"{ADMIN_AGENT}?q=headers",
    f"{ADMIN_AGENT}add/",
    f"{ADMIN_AGENT}{{id}}/change/",
    f"{ADMIN_AGENT}{{id}}/history/",
    f"{ADMIN_AGENT}{{id}}/compare/?a=1&b=2",
    f"{ADMIN_AGENT}{{id}}/labels/",
    f"{ADMIN_AGENT}{{id}}/revisions/1/revert/",
    f"{ADMIN_AGENT}{{id}}/archive/",
    "/admin/events/event/",
    "/admin/events/projectionrun/",
    "/admin/agents_app/apitoken/add/",
    "/admin/auth/user/",
]


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_admin_pages_hold_no_inline_script_or_style(admin_client, agent, page):
    response = admin_client.get(page.format(id=agent))

    assert response.status_code == 200
    code = inline_code(response)
    assert code.blocks == []
    assert code.attributes == []


def test_the_login_page_holds_no_inline_script_or_style(client):
    code = inline_code(client.get("/admin/login/"))

    assert code.blocks == [] and code.attributes == []


def test_the_swagger_ui_marks_its_inline_script_and_style_with_the_nonce_of_its_policy(client):
    first = client.get(DOCS)
    second = client.get(DOCS)

    assert first.status_code == 200
    for name in ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
        assert first[name] == HEADERS[name]
    # drf-spectacular's own choice for this page (OAuth2 pop-ups); nothing else relaxes it
    assert first["Cross-Origin-Opener-Policy"] == "unsafe-none"
    directives = assert_strict_policy(first)
    nonces = [source for source in directives["script-src"] if source.startswith("'nonce-")]
    assert len(nonces) == 1 and directives["style-src"] == ["'self'", nonces[0]]
    nonce = nonces[0][len("'nonce-") : -1]
    code = inline_code(first)
    assert code.blocks == [("style", nonce), ("script", nonce)]
    assert code.attributes == []
    assert "SwaggerUIBundle" in first.content.decode()
    assert policy(second)["script-src"] != directives["script-src"]  # a new nonce each time


def test_the_admin_stylesheet_holds_the_diff_rules_verbatim():
    stylesheet = Path(__file__).parents[1] / "agents_app" / "static" / "agents_app" / "admin.css"

    assert DIFF_CSS in stylesheet.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# HSTS: over TLS only
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def production_like(settings):
    """The values project/settings.py takes when DEBUG is off."""
    settings.DEBUG = False
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    return settings


def test_hsts_is_not_sent_over_plain_http(db, production_like):
    client = Client()  # created after the settings: the middleware reads them once

    probe = client.get("/healthz")  # exempt from the redirect: orchestrators probe over HTTP
    redirect = client.get("/admin/login/")

    assert probe.status_code == 200
    assert "Strict-Transport-Security" not in probe
    assert redirect.status_code == 301 and redirect["Location"].startswith("https://")
    assert "Strict-Transport-Security" not in redirect


@pytest.mark.parametrize("tls", [{"secure": True}, {"HTTP_X_FORWARDED_PROTO": "https"}], ids=["tls", "proxy"])
def test_hsts_is_sent_over_https_with_production_settings(db, production_like, tls):
    client = Client()

    page = client.get("/admin/login/", **tls)
    problem = client.get(AGENTS, **tls)

    for response in (page, problem):
        assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
        assert_security_headers(response)
    assert page.status_code == 200 and problem.status_code == 401


def test_hsts_is_off_over_https_with_the_local_defaults(db, settings):
    settings.SECURE_HSTS_SECONDS = 0  # what DEBUG=1 gives

    response = Client().get("/healthz", secure=True)

    assert "Strict-Transport-Security" not in response


# ----------------------------------------------------------------------------------------------
# In a browser: no violation reported
# ----------------------------------------------------------------------------------------------
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "a-long-test-password-1"


@pytest.fixture
def browser_page(monkeypatch, live_server):
    if not shutil.which(CHROMIUM):
        message = f"needs Chromium at {CHROMIUM} (apt-get install chromium)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM calls between browser steps
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = chromium.new_context().new_page()
        page.set_default_timeout(20_000)
        violations: list[str] = []
        page.on(
            "console",
            lambda message: (
                violations.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        page.violations = violations
        yield page
        chromium.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_swagger_ui_renders_in_a_browser_without_a_policy_violation(browser_page, live_server):
    browser_page.goto(f"{live_server.url}{DOCS}")

    browser_page.wait_for_selector(".opblock-tag")  # the schema was fetched and rendered
    assert browser_page.locator(".opblock").count() > 10
    assert browser_page.violations == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_admin_works_in_a_browser_without_a_policy_violation(
    browser_page, live_server, django_user_model
):
    # A superuser: the groups of the data migration are gone after an earlier transactional test.
    django_user_model.objects.create_superuser("erin", None, PASSWORD)
    context = services.ChangeContext(actor="erin", source="cli", reason="seed")
    change = services.agent_create(content=agent_text("headers"), context=context)
    services.agent_revise(
        agent_id=change.agent_id, content=agent_text("headers", body="v2\n"), context=context
    )
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "erin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    for path in ("", "history/", "compare/?a=1&b=2"):
        page.goto(f"{live_server.url}{ADMIN_AGENT}{change.agent_id}/{path or 'change/'}")
        page.wait_for_load_state()
    # the stylesheet applied: the diff table is laid out by admin.css, not by an inline block
    assert (
        page.locator("table.agent-diff").evaluate("table => getComputedStyle(table).tableLayout") == "fixed"
    )
    page.goto(f"{live_server.url}{ADMIN_AGENT}")
    assert "headers" in page.inner_text("#result_list")
    assert page.violations == []
