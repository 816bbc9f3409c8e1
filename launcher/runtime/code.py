"""The user's code inside the image: fetched once per node, checked, unpacked safely, cached by its hash.

    folder = prepare(uri, environ)                 # <data dir>/code/<sha256>/src: the program's working folder
    layer = install_requirements(file, environ)    # <data dir>/pip/<key>/: packages the image lacks, on PYTHONPATH

`uri` is `<store>/_code/<sha256>.tar.gz` (launcher.contract.code_archive):
the bytes downloaded must hash to the name, or nothing runs. Unpacking
accepts only regular files, folders and links that stay inside the folder;
an absolute name, a `..` component, a device, a FIFO or a hard link refuses
the whole archive. The folder is unpacked beside its final place and renamed
into it with a `.complete` marker, so a restart (or a second rank, or a
second job of the same code on this machine) reuses it without a download;
its files are made read-only, so a program writes its outputs to
LAUNCHER_CHECKPOINT_DIR, not over its own code.

`code.requirements` are installed at start into a folder of their own,
keyed by the file's sha256 and the Python version, never into the image's
environment: pip resolves the file against what the image has (`--dry-run
--report`) and installs only the distributions it would add or change, with
`--target`; that folder goes first on PYTHONPATH. pip reads its index the
usual way (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX in the job's env).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Mapping

from launcher.contract import code_sha256, data_dir
from launcher.errors import LauncherError

__all__ = ["prepare", "unpack", "install_requirements", "UnsafeArchiveError"]

_DONE = ".complete"


class UnsafeArchiveError(LauncherError):
    """A code archive with a member that could write outside its folder."""


def _say(message: str) -> None:
    print(f"[launcher] {message}", flush=True)


def prepare(uri: str, environ: Mapping[str, str] | None = None) -> Path:
    """The unpacked code folder of the archive at `uri` (downloaded and unpacked on first use)."""
    try:
        sha = code_sha256(uri)
    except ValueError as exc:
        raise LauncherError(
            f"--code {uri}: {exc}.", "Submit the job with `launch`, which names the archive by its content."
        ) from None
    home = data_dir(environ) / "code" / sha
    if (home / _DONE).exists():
        _say(f"code {sha[:12]}: unpacked before, in {home / 'src'}")
        return home / "src"
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=home.parent))
    try:
        archive = staging / "code.tar.gz"
        got = _download(uri, archive)
        if got != sha:
            raise LauncherError(f"The code archive {uri} does not match its name (its sha256 is {got[:12]}...).",
                                "Submit the job again: the archive is then uploaded anew.")  # fmt: skip
        count = unpack(archive, staging / "src")
        archive.unlink()
        (staging / _DONE).write_text(uri + "\n")
        _publish(staging, home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _say(f"code {sha[:12]}: {count} files from {uri}, unpacked in {home / 'src'}")
    return home / "src"


def _download(uri: str, dest: Path) -> str:
    from launcher.storage import open_store  # noqa: PLC0415 - a cloud SDK, only for a remote store
    from launcher.storage.base import MissingObjectError, sha256_file  # noqa: PLC0415

    folder, _, name = uri.rstrip("/").rpartition("/")
    try:
        sha = open_store(folder).get(name, dest)
    except MissingObjectError:
        raise LauncherError(
            f"The code archive {uri} is not in the store.",
            "Submit the job again with `launch`: it uploads the archive first.",
        ) from None
    return sha or sha256_file(dest)


def _publish(staging: Path, home: Path) -> None:
    """Rename the finished folder into place; another process may have finished first (its copy is the same)."""
    try:
        os.replace(staging, home)
    except OSError:
        if not (home / _DONE).exists():
            if home.exists():  # an unfinished copy from a killed start: replace it
                shutil.rmtree(home, ignore_errors=True)
            os.replace(staging, home)


def unpack(archive: Path, dest: Path) -> int:
    """Unpack a code archive into `dest` (new), refusing anything that could land outside it; files read-only."""
    dest.mkdir(parents=True)
    root = dest.resolve()
    links: list[tuple[Path, str]] = []
    files = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            path = _member_path(root, member)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
            elif member.isreg():
                _write(tar, member, path, root)
                files += 1
            elif member.issym():
                links.append((path, member.linkname))
            else:
                raise UnsafeArchiveError(f"The code archive holds {member.name!r}, which is not a file, folder or link.",
                                         "Ship only regular files and links inside the folder.")  # fmt: skip
    for path, target in links:  # last, so no file is ever written through a link
        if os.path.isabs(target):
            raise UnsafeArchiveError(
                f"The code archive's link {path.relative_to(root)} points to an absolute path.", "Make it relative."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(path):
            raise UnsafeArchiveError(
                f"The code archive names {path.relative_to(root)} twice.", "Rebuild it with `launch`."
            )
        os.symlink(target, path)
    for path, _target in links:  # after all of them: a chain of links must still end inside
        if not Path(os.path.realpath(path)).is_relative_to(root):
            raise UnsafeArchiveError(f"The code archive's link {path.relative_to(root)} leads outside the folder.",
                                     "Ship only links that point inside the code folder.")  # fmt: skip
    return files


def _member_path(root: Path, member: tarfile.TarInfo) -> Path:
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or ".." in name.parts or "\0" in member.name:
        raise UnsafeArchiveError(
            f"The code archive holds {member.name!r}, a path outside its folder.", "Rebuild it with `launch`."
        )
    path = root.joinpath(*[p for p in name.parts if p not in ("", ".")])
    if path == root and not member.isdir():
        raise UnsafeArchiveError(
            f"The code archive holds {member.name!r}, which has no name.", "Rebuild it with `launch`."
        )
    return path


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path, root: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not Path(os.path.realpath(path.parent)).is_relative_to(root):
        raise UnsafeArchiveError(
            f"The code archive writes {member.name!r} through a link.", "Rebuild it with `launch`."
        )
    source = tar.extractfile(member)
    assert source is not None  # a regular member always has data
    try:
        out = open(path, "xb")
    except FileExistsError:
        raise UnsafeArchiveError(
            f"The code archive names {member.name!r} twice.", "Rebuild it with `launch`."
        ) from None
    with source, out:
        shutil.copyfileobj(source, out, 1 << 20)
    os.chmod(path, 0o555 if member.mode & 0o111 else 0o444)


# ------------------------------------------------------------------ requirements


def install_requirements(file: Path, environ: Mapping[str, str] | None = None, python: str = sys.executable) -> Path:
    """A folder with what `file` needs beyond the image's packages, installed once per content and Python."""
    if not file.is_file():
        raise LauncherError(
            f"code.requirements: {file.name} is not in the code folder.", "Name a file that ships with code:."
        )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = hashlib.sha256(file.read_bytes() + f"\0{python}\0{version}".encode()).hexdigest()
    home = data_dir(environ) / "pip" / key[:32]
    if (home / _DONE).exists():
        _say(f"requirements {file.name}: installed before, in {home}")
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=home.parent))
    try:
        wanted = _missing(file, python, staging / "report.json", environ)
        if wanted:
            _say(f"requirements {file.name}: installing {', '.join(wanted)}")
            _pip(python, ["install", "--no-deps", "--target", str(staging / "site"), *wanted], environ)
        else:
            _say(f"requirements {file.name}: the image has everything")
        (staging / "site").mkdir(exist_ok=True)
        (staging / _DONE).write_text(json.dumps(wanted) + "\n")
        (staging / "report.json").unlink(missing_ok=True)
        _publish(staging, home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


def _missing(file: Path, python: str, report: Path, environ: Mapping[str, str] | None) -> list[str]:
    """`name==version` of each distribution pip would add or change to satisfy `file` over this environment."""
    _pip(python, ["install", "--dry-run", "--quiet", "--report", str(report), "-r", str(file)], environ)
    installs = json.loads(report.read_text()).get("install", [])
    return sorted(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installs)


def _pip(python: str, args: list[str], environ: Mapping[str, str] | None) -> None:
    env = dict(os.environ if environ is None else environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    done = subprocess.run([python, "-m", "pip", *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise LauncherError(f"code.requirements: pip failed: {' / '.join(tail)[:500]}",
                            "Check the file, and that the job's env gives pip an index it can reach (PIP_INDEX_URL or PIP_FIND_LINKS).")  # fmt: skip
