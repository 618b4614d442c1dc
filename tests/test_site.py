"""The site around the API: the landing page at `/` and problem answers for unknown URLs."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_landing_page_links_the_admin_the_api_docs_and_the_probes(client):
    response = client.get("/")

    assert response.status_code == 200
    page = response.content.decode()
    for href in ('href="/admin/"', 'href="/api/v1/docs/"', 'href="/api/v1/schema/"', 'href="/healthz"'):
        assert href in page
    assert "Content-Security-Policy" in response.headers


def test_the_landing_page_refuses_a_post(client):
    assert client.post("/").status_code == 405


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
@pytest.mark.parametrize("path", ["/nope", "/api/v1/", "/api/v1/nope", "/api/v1/agents/x/y/z/"])
def test_unknown_urls_answer_a_problem_in_every_mode(client, settings, debug, path):
    settings.DEBUG = debug

    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == f"nothing at {path}"
    assert "X-Request-ID" in response.headers


def test_management_commands_run_bare_with_the_local_env_file_that_make_run_writes(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    local_env = tmp_path / "local.env"
    environment = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL")}
    environment["LOCAL_ENV_FILE"] = str(local_env)
    command = [sys.executable, "manage.py", "check"]

    refused = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True)
    local_env.write_text("DEBUG=1\nSECRET_KEY=generated-by-make-run\n")
    accepted = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True)

    assert refused.returncode != 0 and "SECRET_KEY must be set" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
