"""A local HTTP server on 127.0.0.1 for the download tests, and the fixtures that use it."""

from __future__ import annotations

import http.server
import socket
import threading
from typing import Callable

import pytest

from ggda.data import download as dl


class Server:
    """Routes: path -> bytes (served whole) or a callable(handler, hit_number) taking over."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes | Callable] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                n = server.hits[self.path] = server.hits.get(self.path, 0) + 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404, "not found")
                elif callable(route):
                    route(self, n)
                else:
                    send(self, route)

            def log_message(self, *args) -> None:
                pass  # keep test output clean

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A short poll interval makes shutdown() (each test's teardown) fast.
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler: http.server.BaseHTTPRequestHandler, data: bytes, upto: int | None = None) -> None:
    """Send `data` with its full Content-Length; stop after `upto` bytes and close (truncation)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data if upto is None else data[:upto])
    handler.wfile.flush()
    handler.close_connection = True


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.0)


@pytest.fixture
def dead_url():
    """A URL on a closed local port: any request fails at once with connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone"
