"""Readers fall back instead of crashing: a damaged newest version is skipped with one line, the previous is used.

Each case damages a store the way a crash, a bug or another tool would, then
reads it with `pull` and with `launch ckpt pull|ls`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from launcher.cli import main
from launcher.storage import open_store
from launcher.storage.base import Store
from launcher.storage.manifest import HISTORY, MANIFEST, _digest
from launcher.storage.sync import pull, push
from tests.launcher.storage.conftest import StoreKind
from tests.launcher.storage.helpers import fake_checkpoint, write_files


def two_versions(store: Store, tmp_path: Path) -> None:
    """Version 1 (epoch 1) and version 2 (epoch 2), both complete."""
    for epoch in (1, 2):
        write_files(tmp_path / "src", fake_checkpoint(epoch))
        push(store, tmp_path / "src")


def forge(store: Store, version: int, change: Callable[[dict[str, Any]], None], head: bool = True) -> None:
    """Rewrite version `version`'s manifest with `change` applied and a VALID digest: intact, but wrong."""
    key = f"{HISTORY}{version:08d}.json"
    body = json.loads(store.get_bytes(key) or b"")
    body.pop("digest")
    change(body)
    body["digest"] = _digest(body)
    data = json.dumps(body).encode()
    store.put_bytes(key, data)
    if head:
        store.put_bytes(MANIFEST, data)


def test_a_missing_object_falls_back_to_the_previous_version(kind: StoreKind, tmp_path: Path) -> None:
    store = kind.store()
    two_versions(store, tmp_path)
    store.delete(["files/00000002/last.pt"])
    lines: list[str] = []
    result = pull(store, tmp_path / "dest", log=lines.append)
    assert result.manifest is not None and result.manifest.version == 1
    assert (tmp_path / "dest" / "last.pt").read_bytes() == fake_checkpoint(1)["last.pt"]
    assert (
        len(lines) == 1
        and "checkpoint 2" in lines[0]
        and "files/00000002/last.pt" in lines[0]
        and "missing" in lines[0]
    )


def test_cli_pull_exits_0_with_the_previous_version(
    s3_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    store = s3_kind.store()
    two_versions(store, tmp_path)
    store.delete(["files/00000002/last.pt"])
    result = CliRunner().invoke(main, ["ckpt", "pull", store.uri, str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "checkpoint 1 (epoch 1)" in result.output and "Traceback" not in result.output
    assert (tmp_path / "out" / "last.pt").read_bytes() == fake_checkpoint(1)["last.pt"]


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.__setitem__(key, value)


def _add_file(name: str) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        body["files"][name] = dict(body["files"]["last.pt"])

    return change


@pytest.mark.parametrize(("change", "reason"), [
    (_drop("version"), "missing 'version'"),
    (_set("version", "2"), "'version' is '2'"),
    (_drop("time"), "missing 'time'"),
    (_set("time", "yesterday"), "'time' is 'yesterday'"),
    (_set("epoch", 2.5), "'epoch' is 2.5"),
    (_add_file("last.pt/inner"), "file-name clash"),
    (_add_file("LAST.pt"), "differ only in case"),
    (_add_file("x" * 300 + ".pt"), "too long"),
    (_set("files", []), "not an object"),
])  # fmt: skip
def test_an_intact_but_invalid_manifest_is_skipped(
    change: Callable[[dict[str, Any]], None], reason: str, tmp_path: Path
) -> None:
    store = open_store(str(tmp_path / "store"))
    two_versions(store, tmp_path)
    forge(store, 2, change)
    lines: list[str] = []
    result = pull(store, tmp_path / "dest", log=lines.append)
    assert result.manifest is not None and result.manifest.version == 1
    assert lines and all("\n" not in line for line in lines)
    assert any(reason in line and "intact but invalid" in line for line in lines), lines
    assert not any("no complete manifest lists them" in line for line in lines), lines


def test_a_history_file_that_names_another_version_is_refused(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    two_versions(store, tmp_path)
    forge(store, 2, _set("version", 9), head=False)
    store.put_bytes(MANIFEST, store.get_bytes(f"{HISTORY}00000001.json") or b"")
    lines: list[str] = []
    assert pull(store, tmp_path / "dest", log=lines.append).manifest.version == 1  # type: ignore[union-attr]
    assert any("says it is version 9" in line for line in lines), lines


def test_a_newer_complete_version_wins_over_a_stale_head(kind: StoreKind, tmp_path: Path) -> None:
    """The writer died after manifests/00000002.json and before manifest.json."""
    store = kind.store()
    two_versions(store, tmp_path)
    store.put_bytes(MANIFEST, store.get_bytes(f"{HISTORY}00000001.json") or b"")
    lines: list[str] = []
    result = pull(store, tmp_path / "dest", log=lines.append)
    assert result.manifest is not None and result.manifest.version == 2
    assert len(lines) == 1 and "names checkpoint 1, but checkpoint 2" in lines[0], lines
    assert (tmp_path / "dest" / "last.pt").read_bytes() == fake_checkpoint(2)["last.pt"]
    if kind.name == "local":
        rows = _ls(store.uri)
        assert [r["status"].split(":")[0] for r in rows] == ["stale", "ok", "ok"] and rows[1]["version"] == 2
        assert _ls(str(store.root.parent))[0]["status"] == "ok" and _ls(str(store.root.parent))[0]["version"] == 2


def test_a_corrupted_version_is_not_called_unfinished(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    two_versions(store, tmp_path)
    for key in (f"{HISTORY}00000002.json", MANIFEST):
        store.put_bytes(key, (store.get_bytes(key) or b"").replace(b'"epoch": 2', b'"epoch": 7'))
    write_files(tmp_path / "orphan", {"last.pt": b"half"})
    store.put("files/00000003/last.pt", tmp_path / "orphan" / "last.pt")  # an upload cut short: no manifest at all
    lines: list[str] = []
    assert pull(store, tmp_path / "dest", log=lines.append).manifest.version == 1  # type: ignore[union-attr]
    assert sum("does not match its digest" in line for line in lines) == 2, lines
    unfinished = [line for line in lines if "no complete manifest lists them" in line]
    assert len(unfinished) == 1 and "[3]" in unfinished[0], lines


def _ls(target: str, *flags: str, code: int = 0) -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["ckpt", "ls", target, "--json", *flags])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_ls_shows_missing_resized_and_altered_files(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    two_versions(store, tmp_path)
    assert [r["status"] for r in _ls(store.uri)] == ["ok", "ok"]
    (store.root / "files/00000002/epoch-2.pt").unlink()
    last = store.root / "files/00000001/last.pt"
    last.write_bytes(last.read_bytes()[:-1] + b"!")  # same size, other bytes: only --verify sees it
    rows = _ls(store.uri)
    assert rows[0]["version"] == 2 and rows[0]["status"] == "damaged: files/00000002/epoch-2.pt is missing"
    assert rows[1]["status"] == "ok"
    rows = _ls(store.uri, "--verify", code=1)  # no usable version left
    assert rows[1]["status"] == "damaged: files/00000001/last.pt does not match its sha256"
    (store.root / "files/00000001/best.pt").write_bytes(b"short")
    assert "files/00000001/best.pt has 5 bytes, the manifest says 4000" in _ls(store.uri, code=1)[1]["status"]


def test_ls_exits_1_when_no_version_is_usable(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    two_versions(store, tmp_path)
    (store.root / "files/00000002/epoch-2.pt").unlink()
    for flags in ((), ("--json",)):
        assert CliRunner().invoke(main, ["ckpt", "ls", store.uri, *flags]).exit_code == 0  # version 1 is still good
    (store.root / "files/00000001/best.pt").write_bytes(b"short")
    for flags in ((), ("--json",)):
        result = CliRunner().invoke(main, ["ckpt", "ls", store.uri, *flags])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.exit_code == 1 and len(errors) == 1 and "No usable checkpoint" in errors[0], result.output
        assert "damaged" in result.stdout  # the listing still says what is wrong with each version


def test_ls_verify_reads_remote_files(s3_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    store = s3_kind.store()
    two_versions(store, tmp_path)
    write_files(tmp_path / "evil", {"last.pt": b"y" * len(fake_checkpoint(2)["last.pt"])})
    store.put("files/00000002/last.pt", tmp_path / "evil" / "last.pt")
    assert [r["status"] for r in _ls(store.uri)] == ["ok", "ok"]
    rows = _ls(store.uri, "--verify")
    assert (
        rows[0]["status"].startswith("damaged: files/00000002/last.pt does not match")
        and rows[1]["status"] == "ok (sha256 verified)"
    )


def test_one_bad_key_never_hides_the_other_runs(
    s3_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    prefix = s3_kind.store()
    write_files(tmp_path / "src", fake_checkpoint(3))
    push(prefix.sub("good-run"), tmp_path / "src")
    client = s3_kind.client_kwargs()["s3"]
    for bad in ("x\\y/manifest.json", "./manifest.json"):
        client.put_object(Bucket="ckpts", Key=f"{prefix.prefix}/{bad}", Body=b"{}")
    rows = {r["run"]: r for r in _ls(prefix.uri)}
    assert rows["good-run"]["epoch"] == 3 and rows["good-run"]["status"] == "ok"
    assert rows["x\\y"]["status"].startswith("refused") and rows["."]["status"].startswith("refused")


def test_ls_of_a_runs_folder_lists_runs_not_the_folder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_files(tmp_path / "src", fake_checkpoint(2))
    push(open_store(str(runs / "quickstart")), tmp_path / "src")
    rows = _ls(str(runs))
    assert [(r["run"], r["epoch"], r["status"]) for r in rows] == [("quickstart", 2, "ok")]
    only_folders = tmp_path / "parent"
    write_files(only_folders / "some-run", fake_checkpoint(1))  # a plain run folder one level down
    result = CliRunner().invoke(main, ["ckpt", "ls", str(only_folders), "--json"])
    assert json.loads(result.stdout) == []
