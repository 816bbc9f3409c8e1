"""Retries with exponential backoff and jitter for throttling, 5xx and dropped connections.

Each SDK retries a little on its own; this outer layer makes the behaviour
the same on every store and long enough to ride out a throttling burst
(S3 `SlowDown`/503, GCS 429, Azure `ServerBusy`/503). Errors are classified
by their HTTP status, read from whichever attribute the SDK uses, so the
module imports no SDK:

- botocore ClientError: `response["ResponseMetadata"]["HTTPStatusCode"]`
  and `response["Error"]["Code"]` (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html)
- google.api_core exceptions: `.code`
- azure.core HttpResponseError: `.status_code`
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

__all__ = ["RetryPolicy", "is_retryable", "http_status"]

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                            "ServerBusy", "TooManyRequests", "RequestTimeout", "InternalError"})  # fmt: skip
CONNECTION_ERRORS = ("ConnectionError", "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
                     "ServiceRequestError", "ServiceResponseError", "IncompleteReadError", "ResponseStreamingError",
                     "ProtocolError", "RemoteDisconnected")  # fmt: skip


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an SDK exception carries, whatever the SDK."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def is_retryable(exc: BaseException) -> bool:
    """True for throttling, 5xx and dropped connections; False for 4xx and our own errors."""
    if http_status(exc) in RETRYABLE_STATUS:
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Code") in THROTTLE_CODES:
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & set(CONNECTION_ERRORS)) or isinstance(exc, (ConnectionError, TimeoutError))


@dataclass
class RetryPolicy:
    """`attempts` tries in all, sleeping base * 2**n (capped, with full jitter) between them."""

    attempts: int = 8
    base: float = 0.2
    cap: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    retries: int = field(default=0, compare=False)
    log: Callable[[str], None] | None = None

    def call(self, fn: Callable[[], T], what: str = "") -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as exc:
                if attempt == self.attempts or not is_retryable(exc):
                    raise
                self.retries += 1
                delay = random.uniform(0, min(self.cap, self.base * 2**attempt))
                if self.log:
                    self.log(f"retrying {what} in {delay:.1f}s after {type(exc).__name__} (status {http_status(exc)})")
                self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover
