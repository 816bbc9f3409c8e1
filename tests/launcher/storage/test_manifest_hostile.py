"""Manifests that cannot be trusted are refused as damage, never a crash (issue 23)."""

from __future__ import annotations

import json

import pytest

from launcher.storage.manifest import Manifest, ManifestError, _digest


def sealed(**over: object) -> bytes:
    body = {
        "format": 1,
        "version": 1,
        "epoch": 1,
        "step": 1,
        "time": 1.0,
        "spec_hash": "",
        "writer": {},
        "files": {},
        **over,
    }
    body["digest"] = _digest(body)
    return json.dumps(body).encode()


ENTRY = {"key": "files/00000001/x", "size": 1, "sha256": "0" * 64}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"files": {}, "files": {"x": 1}, "digest": ""}', "appears twice"),
        (sealed(version=10**40), "below 2**63"),
        (sealed(files={"x": {**ENTRY, "size": 10**30}}), "below 2**63"),
        (sealed(files={"a\u202eb": ENTRY}), "control or invisible"),
        (sealed(files={"a\nb": ENTRY}), "control or invisible"),
    ],
)
def test_hostile_manifests_are_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.parse(data, "m.json")
    assert fragment in info.value.message and "\n" not in info.value.message
