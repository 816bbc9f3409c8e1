"""Test helpers: a fault-injecting HTTP proxy, a store that dies mid-upload, and a tiny fake trainer folder."""

from __future__ import annotations

import http.client
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from launcher.storage.base import ObjectInfo, Progress, Store

__all__ = ["FaultProxy", "DyingStore", "write_files", "fake_checkpoint"]

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FaultProxy:
    """Forwards HTTP to `upstream`, answering the first `fail` requests with 503 / 500 / 429 instead.

    Throttling and 5xx are injected at the HTTP level, so each SDK parses a
    real error response and our retry layer sees the exception the SDK raises.
    `corrupt`: the first so many PUT bodies of at least `corrupt_min` bytes
    reach the server with one byte flipped (what a checksum must catch).
    """

    STATUSES = (503, 500, 429)

    def __init__(self, upstream: str, fail: int, corrupt: int = 0, corrupt_min: int = 1 << 20) -> None:
        self.upstream = urlsplit(upstream)
        self.fail_left = fail
        self.corrupt_left, self.corrupt_min, self.corrupted = corrupt, corrupt_min, 0
        self.failed = 0
        self.forwarded = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        path = self.upstream.path.rstrip("/")
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _take_fault(self) -> int | None:
        with self.lock:
            if self.fail_left <= 0:
                self.forwarded += 1
                return None
            self.fail_left -= 1
            self.failed += 1
            return self.STATUSES[self.failed % len(self.STATUSES)]

    def _mangle(self, method: str, body: bytes | None) -> bytes | None:
        with self.lock:
            if method != "PUT" or not body or len(body) < self.corrupt_min or self.corrupt_left <= 0:
                return body
            self.corrupt_left -= 1
            self.corrupted += 1
        middle = len(body) // 2
        return body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]

    def _handler(self):  # type: ignore[no-untyped-def]
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status = proxy._take_fault()
                if status is not None:
                    return self._fail(status)
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                conn.request(self.command, self.path, body=proxy._mangle(self.command, body), headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                head = self.command == "HEAD"  # a HEAD answer keeps the object's Content-Length
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_HEADERS and (head or k.lower() != "content-length"):
                        self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _fail(self, status: int) -> None:
                code = {503: "SlowDown", 500: "InternalError", 429: "TooManyRequests"}[status]
                body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _relay

        return Handler


class DyingStore(Store):
    """Wraps a store and kills the whole process (os._exit) at a chosen point of an upload."""

    def __init__(self, inner: Store, die_after_files: int | None = None, die_before_manifest: bool = False) -> None:
        super().__init__(inner.uri)
        self.inner, self.die_after_files, self.die_before_manifest = inner, die_after_files, die_before_manifest
        self.files_put = 0
        self.lock = threading.Lock()

    def sub(self, folder: str) -> Store:
        return DyingStore(self.inner.sub(folder), self.die_after_files, self.die_before_manifest)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def put(self, key: str, src: Path, progress: Progress | None = None, sha256: str | None = None) -> ObjectInfo:
        with self.lock:
            if self.die_after_files is not None and self.files_put >= self.die_after_files:
                os._exit(9)
            info = self.inner.put(key, src, progress, sha256)
            self.files_put += 1
            return info

    def get(self, key: str, dest: Path, progress: Progress | None = None) -> None:
        self.inner.get(key, dest, progress)

    def put_bytes(self, key: str, data: bytes) -> None:
        if self.die_before_manifest:
            os._exit(9)
        self.inner.put_bytes(key, data)

    def get_bytes(self, key: str) -> bytes | None:
        return self.inner.get_bytes(key)

    def delete(self, keys: Iterable[str]) -> None:
        self.inner.delete(keys)


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write files the way the trainer does: temp file, then rename."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def fake_checkpoint(epoch: int, size: int = 200_000) -> dict[str, bytes]:
    """A trainer-like folder at the end of `epoch` (1-based): last.pt, best.pt, epoch-N.pt, results.csv."""
    rows = "".join(f"{e},0.{e}\n" for e in range(1, epoch + 1))
    last = (f"epoch {epoch} ".encode() * size)[:size]
    return {
        "last.pt": last,
        "best.pt": b"best" * 1000,
        f"epoch-{epoch}.pt": last,
        "results.csv": f"epoch,train_loss\n{rows}".encode(),
    }
