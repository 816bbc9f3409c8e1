"""The local backend's docker runtime with remote train.data: the host's data cache is mounted, so the
entrypoint's verified copy survives the container (a restart or the next job does not download again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.backends.local import DATA_CACHE_TARGET, LocalOptions, _with_data_cache, docker_payload
from launcher.spec import validate_spec


def payload_for(tmp_path: Path, data: str) -> dict:  # type: ignore[type-arg]
    spec = validate_spec({"name": "remote-data", "train": {"data": data}}, None, tmp_path)
    return docker_payload(spec, LocalOptions(runtime="docker"), "remote-data-1")


def test_remote_data_mounts_the_hosts_data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "cache"))
    payload = _with_data_cache(payload_for(tmp_path, "s3://bucket/digits"))
    assert payload["volumes"][str(tmp_path / "cache")] == {"bind": DATA_CACHE_TARGET, "mode": "rw"}
    assert payload["environment"]["LAUNCHER_DATA_DIR"] == DATA_CACHE_TARGET
    assert (tmp_path / "cache").is_dir()


def test_local_and_builtin_data_mount_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "cache"))
    for data in ("digits", str(tmp_path)):
        payload = payload_for(tmp_path, data)
        assert _with_data_cache(payload) == payload
