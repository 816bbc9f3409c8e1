"""`s3://bucket/prefix` through boto3.

Credentials, region and endpoint come from boto3's standard chain (env vars,
profiles, instance/task roles; `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3`
for S3-compatible servers), or from an injected client. Large files go up
as boto3's managed multipart uploads (`upload_file`, parts read in parallel)
while a helper thread hashes the file; downloads are parallel ranged GETs
hashed on the fly.
https://boto3.amazonaws.com/v1/documentation/api/latest/reference/customizations/s3.html
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from launcher.lazy import require
from launcher.storage.base import CloudStore, MissingObjectError, ObjectInfo, Progress, sha256_file
from launcher.storage.retry import http_status

__all__ = ["S3Store", "default_client"]

PART = 16 * 1024 * 1024  # a ranged GET of a download
UPLOAD_PART = 8 * 1024 * 1024  # a part of an upload (boto3's own default)
UPLOAD_CONCURRENCY = 10  # parts in flight in an upload (boto3's own default; 16 measured slower on 2 cores)


def default_client():  # type: ignore[no-untyped-def]
    """An S3 client from the standard credential chain, with room for parallel parts."""
    boto3 = require("boto3", "aws")
    config = require("botocore.config", "aws").Config(
        retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32
    )
    return boto3.client("s3", config=config)


class S3Store(CloudStore):
    scheme = "s3"
    default_concurrency = 16
    hashes_put = True
    default_client = staticmethod(default_client)

    def _key(self, key: str) -> str:
        return self.name(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        return self.retry.call(lambda: self._list(root, root + prefix), f"list {self.url(prefix)}")

    def _list(self, root: str, prefix: str) -> list[ObjectInfo]:
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                found.append(ObjectInfo(obj["Key"][len(root) :], obj["Size"], obj.get("ETag", "").strip('"')))
        return found

    def count(self, limit: int, prefix: str = "") -> int:
        root = f"{self.prefix}/" if self.prefix else ""
        pages = {"MaxItems": limit, "PageSize": min(limit, 1000)}  # the paginator stops asking at MaxItems

        def run() -> int:
            paginator = self.client.get_paginator("list_objects_v2")
            found = paginator.paginate(Bucket=self.bucket, Prefix=root + prefix, PaginationConfig=pages)
            return min(sum(len(page.get("Contents", [])) for page in found), limit)

        return self.retry.call(run, f"list {self.url(prefix)}")

    def put(self, key: str, src: Path, progress: Progress | None = None, sha256: str | None = None) -> ObjectInfo:
        """Up to one part: one PutObject. Larger: boto3's own `upload_file` (parts read from the file in
        parallel, UPLOAD_CONCURRENCY at a time, as the SDK does by default), while a helper thread reads the
        file once more for its sha256 (from the page cache; hashlib releases the GIL), returned in `checksum`.

        Measured (moto on loopback, 200 MB, 2 shared cores, 2026-12-07): feeding `upload_fileobj` one hashing
        stream, read once in order, was 0.94x of `upload_file` as a bare put and 0.83-0.96x through Pusher.push
        (benchmarks/bench_storage.py); this 1.05-1.13x and 0.91-1.16x (median 1.03). A file
        that changes while it goes up is caught by its caller (its size and mtime, launcher.storage.sync).
        A failed upload is aborted by boto3, so no parts stay billed, and started again by the retry policy.
        """
        name, size = self._key(key), Path(src).stat().st_size
        if size <= UPLOAD_PART:
            data = Path(src).read_bytes()
            sha = sha256 or hashlib.sha256(data).hexdigest()
            self.retry.call(
                lambda: self.client.put_object(Bucket=self.bucket, Key=name, Body=data), f"upload {self.url(key)}"
            )
            if progress:
                progress(len(data))
            return ObjectInfo(key, len(data), sha)
        transfer = require("boto3.s3.transfer", "aws").TransferConfig(
            multipart_threshold=UPLOAD_PART, multipart_chunksize=UPLOAD_PART,
            max_concurrency=min(self.concurrency, UPLOAD_CONCURRENCY),
        )  # fmt: skip

        def run() -> None:
            self.client.upload_file(str(src), self.bucket, name, Config=transfer, Callback=progress)

        with ThreadPoolExecutor(1, thread_name_prefix="sha256") as hasher:
            digest = hasher.submit(sha256_file, Path(src)) if sha256 is None else None
            self.retry.call(run, f"upload {self.url(key)}")
            return ObjectInfo(key, size, sha256 or (digest.result() if digest else None))

    def get(self, key: str, dest: Path, progress: Progress | None = None) -> str:
        """Ranged GETs in parallel, written in place, hashed in order as they arrive: returns the sha256.

        Hashing while downloading saves re-reading the file to verify it, which
        is what made a verified download slower than a plain `download_file`.
        The first part's answer says the object's size (Content-Range), so there
        is no HEAD before it: an object of one part (a packed dataset's shard) is
        one request, where the HEAD cost a fifth of its download's CPU.
        """
        name = self._key(key)
        digest = hashlib.sha256()
        with open(dest, "wb") as f:
            size, data = self._first(key, name, f.fileno(), progress)
            digest.update(data)
            if size <= len(data):
                return digest.hexdigest()
            f.truncate(size)
            with ThreadPoolExecutor(self.concurrency) as pool:
                pending: deque[Future[bytes]] = deque()
                for start in range(len(data), size, PART):
                    pending.append(pool.submit(self._range, name, start, min(start + PART, size), f.fileno(), progress))
                    if len(pending) >= self.concurrency:  # bound memory: at most `concurrency` parts in flight
                        digest.update(pending.popleft().result())
                while pending:
                    digest.update(pending.popleft().result())
        return digest.hexdigest()

    def _first(self, key: str, name: str, fd: int, progress: Progress | None) -> tuple[int, bytes]:
        """(the object's size, its first part, written at 0): one GET of bytes 0 to PART - 1."""

        def fetch() -> tuple[int, bytes]:
            answer = self.client.get_object(Bucket=self.bucket, Key=name, Range=f"bytes=0-{PART - 1}")
            data = answer["Body"].read()
            whole = answer.get("ContentRange")  # "bytes 0-16777215/123456789"; none when the whole object came
            size = int(whole.rsplit("/", 1)[1]) if whole else int(answer["ContentLength"])
            if len(data) != (min(size, PART) if whole else size):
                raise ConnectionError(f"short read of {name} bytes 0-{PART - 1}: {len(data)} bytes of {size}")
            return size, data

        try:
            size, data = self.retry.call(fetch, f"download {name} bytes 0-{PART - 1}")
        except self.client.exceptions.ClientError as exc:
            if http_status(exc) == 404:
                raise MissingObjectError(self.url(key)) from None
            if http_status(exc) == 416 and self._size(key, name) == 0:  # an empty object has no byte 0
                return 0, b""
            raise
        os.pwrite(fd, data, 0)
        if progress and data:
            progress(len(data))
        return size, data

    def _size(self, key: str, name: str) -> int:
        try:
            head = self.retry.call(lambda: self.client.head_object(Bucket=self.bucket, Key=name), f"stat {key}")
        except self.client.exceptions.ClientError as exc:
            if http_status(exc) == 404:
                raise MissingObjectError(self.url(key)) from None
            raise
        return int(head["ContentLength"])

    def _range(self, name: str, start: int, end: int, fd: int, progress: Progress | None) -> bytes:
        def fetch() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=name, Range=f"bytes={start}-{end - 1}")["Body"]
            data = body.read()
            if len(data) != end - start:
                raise ConnectionError(f"short read of {name} bytes {start}-{end - 1}: {len(data)} bytes")
            return data

        data = self.retry.call(fetch, f"download {name} bytes {start}-{end - 1}")
        os.pwrite(fd, data, start)
        if progress:
            progress(len(data))
        return data

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._key(key)
        self.retry.call(lambda: self.client.put_object(Bucket=self.bucket, Key=name, Body=data), f"write {key}")

    def put_bytes_new(self, key: str, data: bytes) -> bool:
        """A conditional write (If-None-Match: *): S3 answers 412 when the key exists.
        https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html"""
        name = self._key(key)
        try:
            self.retry.call(lambda: self.client.put_object(Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*"),
                            f"create {self.url(key)}")  # fmt: skip
        except self.client.exceptions.ClientError as exc:
            if http_status(exc) in (409, 412):  # 409: a concurrent conditional write of the same key
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes | None:
        name = self._key(key)
        return self.retry.call(lambda: self._get_bytes(name), f"read {self.url(key)}")

    def _get_bytes(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def delete(self, keys: Iterable[str]) -> None:
        names = [self._key(k) for k in keys]
        for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
            batch = {"Objects": [{"Key": n} for n in names[start : start + 1000]], "Quiet": True}
            self.retry.call(lambda b=batch: self.client.delete_objects(Bucket=self.bucket, Delete=b), "delete")
