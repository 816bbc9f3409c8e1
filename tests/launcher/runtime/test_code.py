"""The code archive inside the image: checked against its name, unpacked safely, cached by hash."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from launcher.errors import LauncherError
from launcher.runtime.code import UnsafeArchiveError, install_requirements, prepare, unpack
from tests.wheels import tiny_wheel


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


def _named(folder: Path, archive: Path) -> Path:
    """The archive under the name the contract gives it: <sha256>.tar.gz."""
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    named = folder / "_code" / f"{sha}.tar.gz"
    named.parent.mkdir(parents=True, exist_ok=True)
    archive.rename(named)
    return named


@pytest.mark.parametrize("members, message", [
    ([_file("../evil.py")], "a path outside its folder"),
    ([_file("a/../../evil.py")], "a path outside its folder"),
    ([_file("/etc/evil")], "a path outside its folder"),
    ([_special("dev", tarfile.CHRTYPE)], "not a file, folder or link"),
    ([_special("fifo", tarfile.FIFOTYPE)], "not a file, folder or link"),
    ([_file("a.py"), _special("hard", tarfile.LNKTYPE, "a.py")], "not a file, folder or link"),
    ([_special("abs", tarfile.SYMTYPE, "/etc/passwd")], "points to an absolute path"),
    ([_special("up", tarfile.SYMTYPE, "../../outside")], "leads outside the folder"),
    ([_special("b", tarfile.SYMTYPE, ".."), _special("a", tarfile.SYMTYPE, "b/x")], "leads outside the folder"),
])  # fmt: skip
def test_unsafe_members_refuse_the_whole_archive(tmp_path: Path, members: list, message: str) -> None:
    archive = _tar(tmp_path / "a.tar.gz", members)
    with pytest.raises(UnsafeArchiveError, match=message):
        unpack(archive, tmp_path / "out" / "src")
    assert not (tmp_path / "evil.py").exists() and not (tmp_path.parent / "evil.py").exists()


def test_a_file_is_never_written_through_a_link(tmp_path: Path) -> None:
    # a link first, then a file "through" it: links are made only after every file is written
    archive = _tar(tmp_path / "a.tar.gz", [_special("lnk", tarfile.SYMTYPE, "../.."), _file("lnk/escaped.txt")])
    with pytest.raises(UnsafeArchiveError):
        unpack(archive, tmp_path / "deep" / "er" / "src")
    assert not (tmp_path / "escaped.txt").exists()


def test_safe_members_unpack_read_only_with_links_inside(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [
        _file("train.py", b"print(1)"), _file("bin/run.sh", b"#!/bin/sh", 0o755), _file("conf/base.yaml", b"a: 1"),
        _special("conf/default.yaml", tarfile.SYMTYPE, "base.yaml"),
    ])  # fmt: skip
    dest = tmp_path / "src"
    assert unpack(archive, dest) == 3
    assert (dest / "conf" / "default.yaml").read_text() == "a: 1"
    assert stat.S_IMODE((dest / "train.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((dest / "bin" / "run.sh").stat().st_mode) == 0o555


def test_prepare_checks_the_sha256_against_the_name(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [_file("train.py")])
    named = _named(tmp_path / "store", archive)
    wrong = named.with_name("0" * 64 + ".tar.gz")
    named.rename(wrong)
    with pytest.raises(LauncherError, match="does not match its name"):
        prepare(str(wrong), {"LAUNCHER_DATA_DIR": str(tmp_path / "cache")})
    assert not list((tmp_path / "cache" / "code").iterdir()), "nothing half-unpacked is left to be reused"
    with pytest.raises(LauncherError, match="is not a code archive name"):
        prepare(str(tmp_path / "store" / "code.tar.gz"), {"LAUNCHER_DATA_DIR": str(tmp_path / "cache")})


def test_prepare_downloads_once_then_reuses_the_unpacked_folder(tmp_path: Path, capsys) -> None:
    named = _named(tmp_path / "store", _tar(tmp_path / "a.tar.gz", [_file("train.py", b"print('v1')")]))
    env = {"LAUNCHER_DATA_DIR": str(tmp_path / "cache")}
    first = prepare(str(named), env)
    assert (first / "train.py").read_bytes() == b"print('v1')"
    named.unlink()  # a restart must not need the store again
    assert prepare(str(named), env) == first
    assert "unpacked before" in capsys.readouterr().out


def test_a_missing_archive_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="is not in the store"):
        prepare(str(tmp_path / "_code" / ("a" * 64 + ".tar.gz")), {"LAUNCHER_DATA_DIR": str(tmp_path / "cache")})


def test_requirements_install_only_what_the_environment_lacks_into_a_cached_layer(tmp_path: Path) -> None:
    wheels = tiny_wheel(tmp_path, "launcher_extra_pkg", "1.2.3")
    req = tmp_path / "requirements.txt"
    req.write_text("launcher_extra_pkg==1.2.3\nclick\n")  # click is already in this environment
    env = {
        **os.environ,
        "LAUNCHER_DATA_DIR": str(tmp_path / "cache"),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
    }
    layer = install_requirements(req, env)
    site = layer / "site"
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == ["launcher_extra_pkg"]
    out = subprocess.run([sys.executable, "-c", "import launcher_extra_pkg; print(launcher_extra_pkg.VERSION)"],
                         env={**env, "PYTHONPATH": str(site)}, capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "1.2.3"
    (wheels / "launcher_extra_pkg-1.2.3-py3-none-any.whl").unlink()
    assert install_requirements(req, env) == layer, "the same file is not installed twice"


def test_a_failing_install_names_pip_and_the_index(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("no_such_package_anywhere==9.9\n")
    env = {
        **os.environ,
        "LAUNCHER_DATA_DIR": str(tmp_path / "cache"),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(tmp_path),
    }
    with pytest.raises(LauncherError, match="pip failed: .*PIP_INDEX_URL or PIP_FIND_LINKS"):
        install_requirements(req, env)
