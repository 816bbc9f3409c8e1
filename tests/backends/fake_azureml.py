"""A tiny in-memory Azure ML (and Key Vault, and ACR token) service at the HTTP level.

The SDK under test is the real azure-ai-ml / azure-keyvault-secrets stack:
MLClient -> azure-core pipeline -> RequestsTransport -> requests. Only the
socket is replaced: a `requests` adapter answers each HTTP request from
in-memory state and records it, so tests assert on the requests the SDK
actually sends (method, URL, JSON body).
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter

__all__ = ["FakeAzure", "FakeCredential", "Call", "ARM", "REGIONAL"]

ARM = "https://management.azure.com"
REGIONAL = "https://eastus.api.azureml.ms"
_WS = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/?]+)"


class FakeCredential:
    """A TokenCredential that hands out a fixed token; records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any):  # type: ignore[no-untyped-def]
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken("fake-aad-token", int(time.time()) + 3600)


@dataclass
class Call:
    method: str
    url: str
    headers: dict[str, str]
    body: Any

    @property
    def path(self) -> str:
        return urlparse(self.url).path


@dataclass
class FakeAzure(BaseAdapter):
    """State: jobs (name -> REST body), computes, run statuses, log files, Key Vault secrets."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    computes: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, dict[str, str]] = field(default_factory=dict)  # job -> {log file name: text}
    errors: dict[str, str] = field(default_factory=dict)  # job -> error message when Failed
    error_codes: dict[str, str] = field(default_factory=dict)  # job -> the error's code (default UserError)
    secrets: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, list[str]] = field(default_factory=dict)  # job -> statuses returned in turn
    calls: list[Call] = field(default_factory=list)
    registry: str = "wsacr123"
    vault: str = "wskv123"  # the workspace's own Key Vault
    reject_jobs: str = ""  # when set, job PUTs fail with this message (quota, bad field, ...)

    def __post_init__(self) -> None:
        super().__init__()

    # -------------------------------------------------------------- plumbing

    def session(self) -> requests.Session:
        session = requests.Session()
        session.mount("https://", self)
        return session

    def transport(self):  # type: ignore[no-untyped-def]
        from azure.core.pipeline.transport import RequestsTransport

        return RequestsTransport(session=self.session(), session_owner=False)

    def close(self) -> None:
        pass

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        call = Call(str(request.method), str(request.url), dict(request.headers), parsed)
        self.calls.append(call)
        status, payload, headers = self._route(call)
        return _response(request, status, payload, headers)

    def requests_to(self, pattern: str, method: str | None = None) -> list[Call]:
        return [c for c in self.calls if re.search(pattern, c.path) and (method is None or c.method == method)]

    # -------------------------------------------------------------- routes

    def _route(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        host = urlparse(call.url).netloc
        if host.endswith("vault.azure.net"):
            return self._key_vault(call)
        if host.endswith("azurecr.io"):
            return self._acr(call)
        for pattern, handler in self._routes():
            match = re.fullmatch(pattern, call.path)
            if match:
                return handler(call, **match.groupdict())
        return 404, {"error": {"code": "NotFound", "message": f"no fake route for {call.method} {call.path}"}}, {}

    def _routes(self):  # type: ignore[no-untyped-def]
        return [
            (_WS, self._workspace),
            (_WS + r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._environment),
            (_WS + r"/computes/(?P<name>[^/]+)", self._compute),
            (_WS + r"/jobs/(?P<name>[^/]+)", self._job),
            (_WS + r"/jobs/(?P<name>[^/]+)/cancel", self._cancel),
            (r"/discovery", self._discovery),
            (r"/history/v1\.0" + _WS + r"(?:/experiments/[^/]+)?/runs/(?P<name>[^/]+)/details", self._run_details),
            (r"/logs/(?P<name>[^/]+)/(?P<file>.+)", self._log_file),
        ]

    def _workspace(self, call: Call, sub: str, rg: str, ws: str) -> tuple[int, Any, dict[str, str]]:
        registry = (
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{self.registry}"
        )
        body = {
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}",
            "name": ws, "location": "eastus", "kind": "Default",
            "properties": {"discoveryUrl": f"{REGIONAL}/discovery", "containerRegistry": registry, "workspaceId": "ws-guid",
                           "keyVault": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{self.vault}"},
        }  # fmt: skip
        return 200, body, {}

    def _discovery(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        return 200, {"api": REGIONAL, "catalog": REGIONAL, "experimentation": REGIONAL, "history": REGIONAL}, {}

    def _environment(self, call: Call, name: str, version: str, **ids: str) -> tuple[int, Any, dict[str, str]]:
        return 200, {**(call.body or {}), "id": call.path, "name": version}, {}

    def _compute(self, call: Call, name: str, **ids: str) -> tuple[int, Any, dict[str, str]]:
        if name not in self.computes:
            return 404, {"error": {"code": "ResourceNotFound", "message": f"Compute {name} not found"}}, {}
        return 200, {"id": call.path, "name": name, "location": "eastus", "properties": self.computes[name]}, {}

    def _job(self, call: Call, name: str, **ids: str) -> tuple[int, Any, dict[str, str]]:
        if call.method == "PUT" and self.reject_jobs:
            return 400, {"error": {"code": "UserError", "message": self.reject_jobs}}, {}
        if call.method == "PUT":
            body = dict(call.body)
            body["properties"] = {**body["properties"], "status": "NotStarted",
                                  "services": {"Studio": {"endpoint": f"https://ml.azure.com/runs/{name}"}}}  # fmt: skip
            self.jobs[name] = {
                **body,
                "id": call.path,
                "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            }
            return 201, self.jobs[name], {}
        if name not in self.jobs:
            return 404, {"error": {"code": "UserError", "message": f"Job {name} not found"}}, {}
        job = self.jobs[name]
        job["properties"]["status"] = self._next_status(name, job["properties"]["status"])
        return 200, job, {}

    def _next_status(self, name: str, current: str) -> str:
        queue = self.statuses.get(name)
        return queue.pop(0) if queue else current

    def _cancel(self, call: Call, name: str, **ids: str) -> tuple[int, Any, dict[str, str]]:
        if name not in self.jobs:
            return 404, {"error": {"code": "UserError", "message": f"Job {name} not found"}}, {}
        self.jobs[name]["properties"]["status"] = "CancelRequested"
        return 200, None, {}

    def _run_details(self, call: Call, name: str, **ids: str) -> tuple[int, Any, dict[str, str]]:
        job = self.jobs.get(name)
        if job is None:
            return 404, {"error": {"code": "UserError", "message": f"Run {name} not found"}}, {}
        status = self._next_status(name, job["properties"]["status"])
        job["properties"]["status"] = status
        files = {f: f"{REGIONAL}/logs/{name}/{f}?sv=sas" for f in self.logs.get(name, {})}
        body: dict[str, Any] = {"runId": name, "status": status, "logFiles": files}
        if name in self.errors:
            body["error"] = {"error": {"code": self.error_codes.get(name, "UserError"), "message": self.errors[name]}}
        return 200, body, {}

    def _log_file(self, call: Call, name: str, file: str) -> tuple[int, Any, dict[str, str]]:
        return 200, self.logs[name][file], {"Content-Type": "text/plain"}

    def _key_vault(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        if "Authorization" not in call.headers:  # Key Vault's challenge-based auth: the first request is sent bare
            challenge = (
                'Bearer authorization="https://login.microsoftonline.com/tenant-id", resource="https://vault.azure.net"'
            )
            return 401, {"error": {"code": "Unauthorized"}}, {"WWW-Authenticate": challenge}
        name = call.path.split("/secrets/", 1)[1].split("/")[0]
        self.secrets[name] = call.body["value"]
        return (
            200,
            {
                "id": f"https://{urlparse(call.url).netloc}/secrets/{name}/v1",
                "value": call.body["value"],
                "attributes": {"enabled": True},
            },
            {},
        )

    def _acr(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        form = parse_qs(call.body if isinstance(call.body, str) else "")
        if call.path != "/oauth2/exchange" or form.get("access_token") != ["fake-aad-token"]:
            return 401, {"errors": [{"code": "UNAUTHORIZED"}]}, {}
        return 200, {"refresh_token": "acr-refresh-token"}, {}


def _response(
    request: requests.PreparedRequest, status: int, payload: Any, headers: dict[str, str]
) -> requests.Response:
    if isinstance(payload, str):
        data = payload.encode()
    else:
        data = b"" if payload is None else json.dumps(payload).encode()
    head = {"Content-Type": "application/json", "Content-Length": str(len(data)), "x-ms-request-id": "fake", **headers}
    raw = urllib3.HTTPResponse(body=io.BytesIO(data), headers=head, status=status, preload_content=False)
    return HTTPAdapter().build_response(request, raw)
