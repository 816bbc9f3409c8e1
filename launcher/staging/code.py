"""A folder of the user's, shipped with the job by its content: `code:` in the job spec.

    files = collect_for(spec)                 # which files ship (git's ignore rules), refused with one line if unsafe
    print(files.summary())                    # count, size, the ten largest and what was left out (launch --dry-run)
    sha = write_archive(files, dest)          # a reproducible tar.gz: the same files give the same bytes
    plan = stage_code(plan)                   # submit: <checkpoint.uri>/_code/<sha256>.tar.gz, sent once

Which files: everything under `code.dir` except what `.gitignore` files
(nested ones too, with git's precedence: a deeper file's patterns win, the
last matching line wins, an excluded folder is not entered) and
`.launcherignore` files exclude, then `code.exclude`; `.git/` never ships.
The matching is pathspec's GitIgnoreSpec, git's own wildmatch rules.

The launcher's own folders never ship either, whatever the ignore files say
(`never_ship`): the run's checkpoint store when it is a local folder inside
`code.dir` (README's `code: .` with `checkpoint.uri: runs` puts it there:
each archive would carry the previous one, the lease and the checkpoints),
the state folder (job registry), the dataset cache, and any folder that
looks like a store (it holds `_code/` or `_data/`, or a run's `manifest.json`
with `manifests/`, or a `lease.json`). The summary names each with its reason.

What is refused, before anything is sent: a folder larger than
`code.max_size` (the largest files named), a link that points outside the
folder, anything that is not a file or a link (a socket, a FIFO), and files
that look like credentials (CREDENTIAL_PATTERNS) unless excluded or listed in
`code.allow`.

The archive is reproducible: entries sorted, mtime 0, owner root, mode 0644
(0755 when any execute bit is set), a gzip header without name or time, so
its sha256 names it. Submit uploads it to the run's own store, the same one
its checkpoints go to, and skips the upload when an object of that name and
size is there already; the entrypoint checks the sha256 of what it downloads
against the name (launcher.runtime.code). `plan()` stays pure: the request
names the archive with the CONTENT placeholder, which `stage_code` fills in.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import io
import json
import os
import re
import stat
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from launcher.contract import CODE_FOLDER, CONTENT, code_target, data_dir
from launcher.errors import LauncherError
from launcher.staging.data import TransferProgress, fill_placeholder, mentions
from launcher.state.jobs import state_dir
from launcher.storage import open_store
from launcher.storage.sync import size_text

if TYPE_CHECKING:
    from launcher.plan import Plan
    from launcher.spec import CodeConfig, JobSpec

__all__ = [
    "CodeFiles",
    "CREDENTIAL_PATTERNS",
    "collect",
    "collect_for",
    "never_ship",
    "program_of",
    "check_command",
    "write_archive",
    "code_target",
    "stage_code",
    "ship",
]

IGNORE_FILES = (".gitignore", ".launcherignore")
NEVER = (".git",)  # folders that never ship, whatever the ignore files say
# Names that usually hold secrets: refused unless excluded, or allowed by code.allow (gitignore patterns).
CREDENTIAL_PATTERNS = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "credentials",
    "credentials.json",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".netrc",
    ".pypirc",
    ".git-credentials",
    "*.kubeconfig",
)
GZIP_LEVEL = 6
PROGRESS_ABOVE = 8 << 20  # smaller archives go up in a moment: no progress lines
_CHUNK = 1 << 20

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Entry:
    path: str  # relative, POSIX separators
    source: Path
    size: int
    executable: bool = False
    link: str | None = None  # a symlink's target, relative, inside the folder


@dataclass(frozen=True)
class CodeFiles:
    """The files of a code folder that ship, in archive order."""

    root: Path
    entries: tuple[Entry, ...] = field(default_factory=tuple)
    left_out: tuple[tuple[str, str], ...] = ()  # (folder relative to root, why): the launcher's own folders

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    def largest(self, n: int = 10) -> list[Entry]:
        return sorted(self.entries, key=lambda e: (-e.size, e.path))[:n]

    def signature(self) -> str:
        """What the archive depends on, as the file system tells it cheaply: each entry's path, size, mtime, mode."""
        digest = hashlib.sha256(str(self.root.resolve()).encode())
        for e in self.entries:
            st = os.lstat(e.source)
            digest.update(f"{e.path}\0{st.st_size}\0{st.st_mtime_ns}\0{e.executable}\0{e.link}\n".encode())
        return digest.hexdigest()

    def summary(self) -> str:
        """What `launch --dry-run` prints: count, total size and the ten largest files."""
        lines = [f"code: {self.root}: {len(self.entries)} files, {size_text(self.size)}; the largest:"]
        lines += [f"  {size_text(e.size):>10}  {e.path}" for e in self.largest()]
        lines += [f"  left out: {path}/ ({why})" for path, why in self.left_out]
        return "\n".join(lines)


# ------------------------------------------------------------------ which files


class _Rules:
    """The ignore rules in force in one folder: its own files' patterns, then its parents'."""

    def __init__(self, specs: tuple[tuple[str, Any], ...]) -> None:
        self.specs = specs  # (folder relative to the root, GitIgnoreSpec), deepest first

    def below(self, folder: Path, rel: str) -> "_Rules":
        lines: list[str] = []
        for name in IGNORE_FILES:  # .launcherignore after .gitignore: its lines win over the folder's .gitignore
            file = folder / name
            if file.is_file():
                lines += file.read_text(encoding="utf-8", errors="replace").splitlines()
        return _Rules(((rel, _spec(lines)), *self.specs)) if lines else self

    def ignored(self, rel: str, is_dir: bool) -> bool:
        for base, spec in self.specs:
            if base and not rel.startswith(base + "/"):
                continue
            local = rel[len(base) + 1 :] if base else rel
            result = spec.check_file(local + "/" if is_dir else local)
            if result.include is not None:
                return bool(result.include)
        return False


def _spec(lines: Iterable[str]) -> Any:
    from pathspec import GitIgnoreSpec  # noqa: PLC0415 - only when a spec has code:

    return GitIgnoreSpec.from_lines(list(lines))


# What marks a folder as the launcher's own, strictly enough that a user's `_data/` or `lease.json` is not taken
# for it: a store holds archives named by their sha256 (launcher.contract.CODE_FOLDER) or data uploads under
# their sha256 (launcher.staging.data), a run folder its manifests (launcher.storage.manifest) or its lease
# (launcher.storage.lease: JSON with a job and a heartbeat).
_STORE_FOLDERS = ("_code", "_data")
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}(\.tar\.gz)?$")


def _store_part(folder: Path) -> bool:
    """Whether `folder` (a `_code` or `_data` folder) holds what the launcher puts there: sha256-named entries."""
    try:
        return any(_SHA256_NAME.match(entry.name) for entry in os.scandir(folder))
    except OSError:
        return False


def _a_lease(file: Path) -> bool:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"job", "heartbeat"} <= data.keys()


def never_ship(spec: "JobSpec", environ: Mapping[str, str] | None = None) -> dict[Path, str]:
    """The launcher's own folders, resolved, each with why it never ships with the code (pure but for env reads)."""

    folders: dict[Path, str] = {}
    uri = spec.checkpoint.uri
    if uri and "://" not in uri:
        store = "the checkpoint store, checkpoint.uri: it holds the earlier archives and checkpoints"
        folders[Path(uri).expanduser().resolve()] = store
    folders.setdefault(state_dir(environ).expanduser().resolve(), "the launcher's state folder, $LAUNCHER_STATE_DIR")
    folders.setdefault(data_dir(environ).expanduser().resolve(), "the launcher's dataset cache, $LAUNCHER_DATA_DIR")
    return folders


def collect_for(spec: "JobSpec", environ: Mapping[str, str] | None = None) -> CodeFiles:
    """`collect(spec.code)` less the launcher's own folders (`never_ship`): what submit ships and a dry run shows.
    The program `command:` names must be among them (`check_command`)."""
    if spec.code is None:
        raise LauncherError("this job has no code: to ship.", "Set code: to the folder that holds your program.")
    files = collect(spec.code, never_ship(spec, environ))
    check_command(spec.command or [], files)
    return files


_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
_SHELLS = ("bash", "sh")
_PYTHON_VALUE_OPTIONS = ("-W", "-X", "-Q")  # python's options that take the next word as their value


def program_of(command: Sequence[str]) -> tuple[str, str] | None:
    """("file", path) or ("module", name) of the program a command runs from the code folder, when it names one:
    `python [opts] train.py ...`, `python -m pkg.mod`, `bash run.sh`, `./run.sh`; else None (`-c`, an absolute
    path or a bare command: the image's)."""
    if not command:
        return None
    first, base = command[0], command[0].rsplit("/", 1)[-1]
    if _PYTHON.match(base) or base in _SHELLS:
        words = iter(command[1:])
        for word in words:
            if word == "-c":
                return None
            if word == "-m" and _PYTHON.match(base):
                name = next(words, "")
                return ("module", name) if name else None
            if word in _PYTHON_VALUE_OPTIONS and _PYTHON.match(base):
                next(words, None)
            elif not word.startswith("-"):
                return _relative_file(word)
        return None
    return _relative_file(first) if "/" in first else None


def _relative_file(word: str) -> tuple[str, str] | None:
    if word.startswith(("/", "~")) or "$" in word:
        return None  # a path in the image, or one the shell fills in
    return ("file", os.path.normpath(word).replace(os.sep, "/"))


def check_command(command: Sequence[str], files: CodeFiles) -> None:
    """A misspelled or left-out program fails here, at the dry run and before submit, not after a (paid)
    start-up: the file `command:` runs must be among the files that ship."""
    found = program_of(command)
    if found is None:
        return
    kind, name = found
    shipped = {e.path for e in files.entries}
    if kind == "module":
        parts = name.split(".")
        if not ({parts[0], parts[0] + ".py"} & {p.split("/")[0] for p in shipped}):
            return  # a module of the image's (torch.distributed.run, ...), not of this folder
        path = "/".join(parts)
        candidates = (f"{path}.py", f"{path}/__main__.py", f"{path}/__init__.py")
        if any(c in shipped for c in candidates):
            return
        missing, known = f"module {name}", sorted(p.removesuffix(".py").replace("/", ".") for p in shipped)
    else:
        if name in shipped:
            return
        missing, known = name, sorted(shipped)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    left_out = kind == "file" and (files.root / name).is_file()
    why = " (it is there, but an ignore file or code.exclude leaves it out)" if left_out else ""
    raise LauncherError(
        f"command: {missing} is not among the files that ship from {files.root}{why}.",
        f"{hint}Fix the name in command:, relative to the code folder, where the command runs.",
    )


def collect(config: "CodeConfig", leave_out: Mapping[Path, str] | None = None) -> CodeFiles:
    """The files of `config.dir` that ship; raises a LauncherError naming what is unsafe or too big.

    `leave_out`: resolved folders that never ship, with the reason the summary gives; folders that look like
    a checkpoint store or a run folder of one are left out too.
    """
    root = Path(config.dir)
    if not root.is_dir():
        raise LauncherError(f"code.dir {root} is not a folder.", "Point code: at the folder that holds your program.")
    extra = _Rules((("", _spec(config.exclude)),)) if config.exclude else None
    walk = _Walk(root.resolve(), extra, dict(leave_out or {}))
    walk.own_store = walk.root in walk.leave_out  # code: . with checkpoint.uri: . -- the store's own parts stay home
    _walk(walk, walk.root, "", _Rules(()))
    _refuse(root, config, walk.entries, walk.problems)
    return CodeFiles(root, tuple(sorted(walk.entries, key=lambda e: e.path)), tuple(walk.left))


def _own_folder(folder: Path, leave_out: Mapping[Path, str]) -> str | None:
    """Why `folder` is the launcher's own and never ships, or None."""
    if folder in leave_out:
        return leave_out[folder]
    parts = [f"{name}/" for name in _STORE_FOLDERS if _store_part(folder / name)]
    if parts:
        return f"a checkpoint store: it holds {' and '.join(parts)}"
    if (folder / "manifest.json").is_file() and (folder / "manifests").is_dir():
        return "a run folder of a checkpoint store: it holds manifest.json"
    if (folder / "lease.json").is_file() and _a_lease(folder / "lease.json"):
        return "a run folder of a checkpoint store: it holds lease.json"
    return None


@dataclass
class _Walk:
    root: Path
    extra: _Rules | None
    leave_out: dict[Path, str]
    own_store: bool = False
    entries: list[Entry] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=lambda: {"links": [], "special": []})
    left: list[tuple[str, str]] = field(default_factory=list)

    def skipped(self, path: str, item: os.DirEntry[str], is_dir: bool, rules: _Rules) -> bool:
        if (is_dir and item.name in NEVER) or rules.ignored(path, is_dir):
            return True
        if self.extra and self.extra.ignored(path, is_dir):
            return True
        if not is_dir:
            return False
        if self.own_store and "/" not in path and item.name in _STORE_FOLDERS and _store_part(Path(item.path)):
            why: str | None = self.leave_out[self.root] + f" ({item.name}/ is its own)"
        else:
            why = _own_folder(Path(item.path), self.leave_out)
        if why is not None:
            self.left.append((path, why))
        return why is not None


def _walk(walk: _Walk, folder: Path, rel: str, rules: _Rules) -> None:
    root, out, problems = walk.root, walk.entries, walk.problems
    rules = rules.below(folder, rel)
    for item in sorted(os.scandir(folder), key=lambda d: d.name):
        path = f"{rel}/{item.name}" if rel else item.name
        is_dir = item.is_dir(follow_symlinks=False)
        if walk.skipped(path, item, is_dir, rules):
            continue
        if item.is_symlink():
            link = _inside_link(root, Path(item.path))
            if link is None:
                problems["links"].append(path)
            else:
                out.append(Entry(path, Path(item.path), 0, link=link))
        elif is_dir:
            _walk(walk, Path(item.path), path, rules)
        elif item.is_file(follow_symlinks=False):
            st = item.stat(follow_symlinks=False)
            out.append(Entry(path, Path(item.path), st.st_size, bool(st.st_mode & 0o111)))
        else:
            problems["special"].append(path)


def _inside_link(root: Path, link: Path) -> str | None:
    """The link's target relative to the link's folder, when it resolves inside `root`; else None."""
    target = os.readlink(link)
    resolved = (link.parent / target).resolve()
    if os.path.isabs(target) or not resolved.is_relative_to(root) or not resolved.exists():
        return None
    return target


def _refuse(root: Path, config: "CodeConfig", entries: list[Entry], problems: dict[str, list[str]]) -> None:
    if problems["links"]:
        raise LauncherError(
            f"code: {_names(problems['links'])} in {root} link outside the folder (or to nothing), so they cannot ship.",
            "Copy what they point to into the folder, or exclude them in .launcherignore or code.exclude.",
        )
    if problems["special"]:
        raise LauncherError(f"code: {_names(problems['special'])} in {root} are not regular files (sockets, FIFOs, devices).",
                            "Exclude them in .launcherignore or code.exclude.")  # fmt: skip
    secret = _spec(CREDENTIAL_PATTERNS)
    allowed = _spec(config.allow)
    found = [e.path for e in entries if secret.match_file(e.path) and not allowed.match_file(e.path)]
    if found:
        raise LauncherError(
            f"code: {_names(found)} in {root} look like credentials and would ship with the job.",
            "Leave them out (.launcherignore or code.exclude) and pass secrets through secrets:, or list them in code.allow.",
        )
    if not entries:
        raise LauncherError(f"code: {root} has no files to ship (all are ignored, or it is empty).",
                            "Check .gitignore, .launcherignore and code.exclude.")  # fmt: skip
    total = sum(e.size for e in entries)
    if total > config.max_size:
        largest = ", ".join(f"{e.path} ({size_text(e.size)})" for e in CodeFiles(root, tuple(entries)).largest(5))
        raise LauncherError(
            f"code: {root} holds {size_text(total)} to ship, more than code.max_size ({size_text(config.max_size)}); the largest: {largest}.",
            "Exclude data and outputs in .launcherignore or code.exclude (data belongs in train.data), or raise code.max_size.",
        )


def _names(paths: list[str], n: int = 5) -> str:
    shown = ", ".join(paths[:n])
    return shown + (f" and {len(paths) - n} more" if len(paths) > n else "")


# ------------------------------------------------------------------ the archive


def write_archive(files: CodeFiles, dest: Path) -> str:
    """Write the reproducible tar.gz of `files` to `dest`; returns its sha256."""
    digest = hashlib.sha256()
    with open(dest, "wb") as raw:
        hashing = _HashingWriter(raw, digest)
        with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=0, compresslevel=GZIP_LEVEL) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for entry in files.entries:
                    _add(tar, entry)
    return digest.hexdigest()


def _add(tar: tarfile.TarFile, entry: Entry) -> None:
    info = tarfile.TarInfo(entry.path)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if entry.link is not None:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
        tar.addfile(info)
        return
    info.mode = 0o755 if entry.executable else 0o644
    with open(entry.source, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        if size != entry.size or not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise LauncherError(
                f"code: {entry.path} changed while the archive was written.", "Submit again once it is saved."
            )
        info.size = size
        tar.addfile(info, src)


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: Any, digest: Any) -> None:
        self.raw, self.digest = raw, digest

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return int(self.raw.write(data))


# ------------------------------------------------------------------ submit


def ship(files: CodeFiles, target: str, log: Log = _stderr, known: Path | None = None, **clients: Any) -> str:
    """Archive `files` and upload the archive to `target` (with the placeholder) unless it is there; its sha256.

    `known`: a JSON file remembering which archive (sha256, size) a folder listing (each file's path, size,
    mtime and mode) made, so an unchanged folder whose archive is in the store is neither archived nor
    sent again; as the data upload's hash cache, a file rewritten with the same size and mtime is missed.
    """
    cache, signature = _Known(known), files.signature()
    if (hit := cache.get(signature)) is not None:
        sha, size = hit
        store, name, there = _stored(target, sha, clients, size)
        if there:
            log(f"code: {files.root}: unchanged, already at {store.url(name)}, nothing to send")
            return sha
    with tempfile.TemporaryDirectory(prefix="launcher-code-") as tmp:
        archive = Path(tmp) / "code.tar.gz"
        sha = write_archive(files, archive)
        size = archive.stat().st_size
        store, name, there = _stored(target, sha, clients, size)
        where = store.url(name)
        if there:
            log(f"code: {files.root}: {len(files.entries)} files, already at {where} (same content), nothing to send")
        else:
            log(
                f"code: {files.root}: {len(files.entries)} files ({size_text(files.size)}) -> {where} ({size_text(size)} compressed)"
            )
            store.put(name, archive, TransferProgress(size, log).advance if size > PROGRESS_ABOVE else None, sha256=sha)
    cache.put(signature, sha, size)
    return sha


def _stored(target: str, sha: str, clients: dict[str, Any], size: int) -> tuple[Any, str, bool]:
    """(the store of the archive `sha`, its key there, whether an object of that key and `size` is there)."""
    folder, _, name = target.replace(CONTENT, sha).rpartition("/")
    store = open_store(folder, **clients)
    return store, name, {o.key: o.size for o in store.list(name)}.get(name) == size


class _Known:
    """folder listing signature -> (archive sha256, size), in a small JSON file (best effort)."""

    LIMIT = 200  # listings kept: the newest ones

    def __init__(self, path: Path | None) -> None:
        self.path = path
        try:
            self.known: dict[str, list[Any]] = json.loads(path.read_text()) if path else {}
        except (OSError, ValueError):
            self.known = {}

    def get(self, signature: str) -> tuple[str, int] | None:
        entry = self.known.get(signature)
        return (str(entry[0]), int(entry[1])) if isinstance(entry, list) and len(entry) == 2 else None

    def put(self, signature: str, sha: str, size: int) -> None:
        if self.path is None:
            return
        self.known.pop(signature, None)
        self.known[signature] = [sha, size]
        kept = dict(list(self.known.items())[-self.LIMIT :])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(kept))
            os.replace(tmp, self.path)
        except OSError:
            pass  # the next submit archives again


def stage_code(plan: "Plan", log: Log = _stderr, **clients: Any) -> "Plan":
    """Ship the spec's code folder and put the archive's sha256 where the request holds the placeholder."""
    spec = plan.spec
    marker = f"{CODE_FOLDER}/{CONTENT}"
    if spec.code is None or not mentions(plan.payload, marker):
        return plan

    sha = ship(collect_for(spec), code_target(spec), log, known=state_dir() / "code-archives.json", **clients)
    return replace(plan, payload=fill_placeholder(plan.request(), marker, f"{CODE_FOLDER}/{sha}"))
