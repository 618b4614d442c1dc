"""A real HTTP receiver for webhook tests: http.server in a thread on 127.0.0.1.

It records every request (headers and body bytes), answers with the next scripted status
(200 when none is left), and can hold requests on a threading.Event to play a slow endpoint.
"""

import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def position(self) -> int:
        return self.json()["data"]["position"]


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.answers: list[tuple[int, dict[str, str], bytes]] = []  # scripted, used in order
        self.hold: threading.Event | None = None  # requests wait on it (when set to an Event)
        self.hold_only_first = False
        self.got_request = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                    first = len(receiver.requests) == 1
                    answer = receiver.answers.pop(0) if receiver.answers else (200, {}, b"ok")
                receiver.got_request.set()
                hold = receiver.hold
                if hold is not None and (first or not receiver.hold_only_first):
                    hold.wait(timeout=60)
                status, headers, payload = answer
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the sender gave up (timeout, killed): nothing to answer
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        with self._lock:
            self.answers.append((status, headers or {}, body))

    def positions(self) -> list[int]:
        with self._lock:
            return [request.position for request in self.requests]

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every body, each verified with the subscription's secret (raises if one is not signed by it)."""
        with self._lock:
            requests = list(self.requests)
        return [Webhook(secret).verify(request.body, request.headers) for request in requests]

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def wait_until(check, *, timeout: float = 20.0, what: str = "condition") -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not true after {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started
