"""A folder served over plain HTTP on loopback, in a thread, counting what it was asked: the tests' weights server
(nothing in the tests reaches the internet)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["FileServer", "serve_folder"]


class FileServer:
    def __init__(self, server: http.server.ThreadingHTTPServer, requests: Counter[str]) -> None:
        self.server, self.requests = server, requests  # requests: "GET /path" -> count

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/{path.lstrip('/')}"


@contextmanager
def serve_folder(folder: Path) -> Iterator[FileServer]:
    """Serve `folder` at http://127.0.0.1:PORT/ (Last-Modified on every file, HEAD answered) until the block ends."""
    requests: Counter[str] = Counter()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def send_head(self):  # type: ignore[no-untyped-def]
            requests[f"{self.command} {self.path}"] += 1
            return super().send_head()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(server, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
