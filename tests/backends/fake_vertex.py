"""A local HTTP fake of the Google REST endpoints the gcp backend calls.

The real client libraries (aiplatform_v1 JobServiceClient with the REST
transport, google-cloud-logging over HTTP, Secret Manager over REST) talk to
it through an `http://127.0.0.1:PORT` api_endpoint with anonymous
credentials, so tests check what the libraries actually send on the wire.

Served:
    POST /v1/projects/P/locations/R/customJobs            create (state PENDING)
    GET  /v1/projects/P/locations/R/customJobs/ID          get
    POST /v1/projects/P/locations/R/customJobs/ID:cancel   cancel (state CANCELLING)
    POST /v2/entries:list                                  Cloud Logging entries
    POST /v1/projects/P/secrets?secretId=S                 create secret
    POST /v1/projects/P/secrets/S:addVersion               add secret version
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeGoogle", "Request"]

_JOBS = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/customJobs$")
_JOB = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/customJobs/[^/:]+)(:cancel)?$")
_SECRETS = re.compile(r"^/v1/(projects/[^/]+)/secrets$")
_VERSION = re.compile(r"^/v1/(projects/[^/]+/secrets/[^/:]+):addVersion$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


@dataclass
class FakeGoogle:
    """State of the fake: jobs by resource name, secrets, log entries, recorded requests."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, list[bytes]] = field(default_factory=dict)
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    logging_status: int = 200
    # "create" / "get" / "cancel" -> (HTTP code, google.rpc status, message) that call answers with, as Vertex does
    job_errors: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "FakeGoogle":
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def set_state(self, name: str, state: str, error: str | None = None, code: int = 3) -> None:
        """The job's state; `error` and `code` (a google.rpc.Code number) fill its `error` as Vertex does."""
        self.jobs[name]["state"] = state
        if error:
            self.jobs[name]["error"] = {"code": code, "message": error}

    # ------------------------------------------------------------ routes

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        call = (
            "create"
            if _JOBS.match(path)
            else ("cancel" if path.endswith(":cancel") else "get")
            if _JOB.match(path)
            else ""
        )
        if call in self.job_errors:
            return _error(*self.job_errors[call])
        if method == "POST" and (m := _JOBS.match(path)):
            return self._create_job(m.group(1), body)
        if (m := _JOB.match(path)) and m.group(1) in self.jobs:
            if method == "POST" and m.group(2):
                self.set_state(m.group(1), "JOB_STATE_CANCELLING")
                return 200, {}
            return 200, self.jobs[m.group(1)]
        if method == "POST" and path == "/v2/entries:list":
            return self._entries(body)
        if method == "POST" and (m := _SECRETS.match(path)):
            return self._create_secret(f"{m.group(1)}/secrets/{query['secretId'][0]}", body)
        if method == "POST" and (m := _VERSION.match(path)) and m.group(1) in self.secrets:
            self.secrets[m.group(1)].append(base64.b64decode(body["payload"]["data"]))
            return 200, {"name": f"{m.group(1)}/versions/{len(self.secrets[m.group(1)])}", "state": "ENABLED"}
        return _error(404, "NOT_FOUND", f"{method} {path} not found")

    def _create_job(self, parent: str, body: dict[str, Any]) -> tuple[int, Any]:
        name = f"{parent}/customJobs/{1000 + len(self.jobs)}"
        self.jobs[name] = {**body, "name": name, "state": "JOB_STATE_PENDING", "createTime": "2026-01-01T00:00:00Z"}
        return 200, self.jobs[name]

    def _create_secret(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        if name in self.secrets:
            return _error(409, "ALREADY_EXISTS", f"Secret [{name}] already exists.")
        self.secrets[name] = []
        return 200, {**body, "name": name}

    def _entries(self, body: dict[str, Any]) -> tuple[int, Any]:
        if self.logging_status != 200:
            return _error(self.logging_status, "PERMISSION_DENIED", "Permission 'logging.logEntries.list' denied")
        wanted = re.search(r'resource\.labels\.job_id="([^"]+)"', body.get("filter", ""))
        after = re.search(r'timestamp>"([^"]+)"', body.get("filter", ""))
        entries = [
            e for e in self.log_entries
            if wanted and e["resource"]["labels"]["job_id"] == wanted.group(1) and (not after or _time(e["timestamp"]) > _time(after.group(1)))
        ]  # fmt: skip
        return 200, {"entries": entries}


def _time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _error(code: int, status: str, message: str) -> tuple[int, Any]:
    return code, {"error": {"code": code, "message": message, "status": status}}


class _Handler(BaseHTTPRequestHandler):
    state: FakeGoogle

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        query = parse_qs(url.query)
        self.state.requests.append(Request(method, url.path, query, body, dict(self.headers)))
        code, out = self.state.route(method, url.path, query, body)
        data = json.dumps(out).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
