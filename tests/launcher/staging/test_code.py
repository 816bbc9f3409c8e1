"""`code:`: which files ship (git's ignore rules), what is refused, the reproducible archive, the upload once."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import main
from launcher.errors import LauncherError
from launcher.spec import CodeConfig, load_spec, validate_spec
from launcher.staging.code import code_target, collect, ship, stage_code, write_archive
from launcher.storage.local import LocalStore

PROGRAM = Path(__file__).resolve().parents[3] / "examples" / "own_program"


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def _paths(config: CodeConfig) -> list[str]:
    return [e.path for e in collect(config).entries]


def test_gitignore_rules_nested_negation_and_git_folder(tmp_path: Path) -> None:
    _tree(tmp_path, {
        ".gitignore": "*.log\nbuild/\n/data\n!keep.log\n",
        "train.py": "", "keep.log": "", "run.log": "", "build/x.py": "", "data/big.bin": "",
        "pkg/data/inner.txt": "",  # '/data' is anchored to the root: this one ships
        "pkg/.gitignore": "secret_*.txt\n!important.log\n", "pkg/secret_a.txt": "", "pkg/important.log": "",
        "pkg/sub/secret_b.txt": "", "pkg/sub/ok.txt": "",
        ".git/config": "", ".git/objects/ab": "",
        ".launcherignore": "notebooks/\n", "notebooks/a.ipynb": "",
        "scratch/tmp.txt": "",
    })  # fmt: skip
    config = CodeConfig(dir=str(tmp_path), exclude=["scratch/"])
    assert _paths(config) == [
        ".gitignore", ".launcherignore", "keep.log", "pkg/.gitignore", "pkg/data/inner.txt", "pkg/important.log",
        "pkg/sub/ok.txt", "train.py",
    ]  # fmt: skip


def test_an_excluded_folder_is_not_entered_as_in_git(tmp_path: Path) -> None:
    # git: "It is not possible to re-include a file if a parent directory of that file is excluded."
    _tree(tmp_path, {".gitignore": "out/\n!out/keep.txt\n", "out/keep.txt": "", "main.py": ""})
    assert _paths(CodeConfig(dir=str(tmp_path))) == [".gitignore", "main.py"]


def test_the_test_program_ships_without_its_ignored_outputs(tmp_path: Path) -> None:
    import shutil

    folder = shutil.copytree(PROGRAM, tmp_path / "prog")
    _tree(folder, {"outputs/run1/weights.bin": b"x" * 1000, "train.log": "log"})
    assert _paths(CodeConfig(dir=str(folder))) == [".gitignore", "helper.py", "job.yaml", "train.py"]


def test_size_limit_names_the_largest_files(tmp_path: Path) -> None:
    _tree(tmp_path, {"a.bin": b"x" * 3000, "b.bin": b"x" * 2000, "main.py": "print()"})
    with pytest.raises(LauncherError) as err:
        collect(CodeConfig(dir=str(tmp_path), max_size="4KiB"))
    text = str(err.value)
    assert "more than code.max_size (4.0 KiB)" in text and "a.bin (2.9 KiB), b.bin (2.0 KiB)" in text
    assert "\n" not in text
    assert len(collect(CodeConfig(dir=str(tmp_path), max_size=10_000)).entries) == 3


@pytest.mark.parametrize("name", [".env", "deploy/key.pem", "credentials", "home/.ssh/id_rsa", ".env.prod", ".netrc"])
def test_credential_files_are_refused_unless_excluded_or_allowed(tmp_path: Path, name: str) -> None:
    _tree(tmp_path, {"main.py": "", name: "SECRET=1"})
    with pytest.raises(LauncherError, match="look like credentials") as err:
        collect(CodeConfig(dir=str(tmp_path)))
    assert name in str(err.value) and "SECRET" not in str(err.value)
    assert name not in _paths(CodeConfig(dir=str(tmp_path), exclude=[name]))
    assert name in _paths(CodeConfig(dir=str(tmp_path), allow=[name]))


def test_links_outside_the_folder_are_refused_by_name(tmp_path: Path) -> None:
    root = _tree(tmp_path / "code", {"main.py": "", "conf/base.yaml": "a: 1"})
    (root / "conf" / "default.yaml").symlink_to("base.yaml")  # inside: ships as a link
    assert "conf/default.yaml" in _paths(CodeConfig(dir=str(root)))
    outside = _tree(tmp_path, {"elsewhere.txt": "x"}) / "elsewhere.txt"
    (root / "escape.txt").symlink_to(outside)
    (root / "up").symlink_to("../")
    with pytest.raises(LauncherError, match="link outside the folder") as err:
        collect(CodeConfig(dir=str(root)))
    assert "escape.txt, up" in str(err.value)


def test_special_files_are_refused(tmp_path: Path) -> None:
    _tree(tmp_path, {"main.py": ""})
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(LauncherError, match="pipe .* are not regular files"):
        collect(CodeConfig(dir=str(tmp_path)))


def test_a_missing_or_empty_folder_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="is not a folder"):
        collect(CodeConfig(dir=str(tmp_path / "nope")))
    _tree(tmp_path, {".gitignore": "*\n"})
    with pytest.raises(LauncherError, match="no files to ship"):
        collect(CodeConfig(dir=str(tmp_path)))


def test_the_archive_is_reproducible_and_named_by_its_content(tmp_path: Path) -> None:
    root = _tree(tmp_path / "code", {"main.py": "print(1)\n", "pkg/util.py": "X = 1\n", "run.sh": "#!/bin/sh\n"})
    (root / "run.sh").chmod(0o700)
    first = write_archive(collect(CodeConfig(dir=str(root))), tmp_path / "a.tar.gz")
    os.utime(root / "main.py", (1, 1))  # a new mtime, owner-only modes: the same bytes
    (root / "pkg" / "util.py").chmod(0o600)
    second = write_archive(collect(CodeConfig(dir=str(root))), tmp_path / "b.tar.gz")
    assert first == second == hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest()
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["main.py", "pkg/util.py", "run.sh"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert [oct(m.mode) for m in members] == ["0o644", "0o644", "0o755"]
    (root / "main.py").write_text("print(2)\n")
    assert write_archive(collect(CodeConfig(dir=str(root))), tmp_path / "c.tar.gz") != first


class CountingStore(LocalStore):
    puts: list[str] = []

    def put(self, key, src, progress=None, sha256=None):  # type: ignore[no-untyped-def]
        CountingStore.puts.append(key)
        return super().put(key, src, progress, sha256)


def test_an_unchanged_folder_is_uploaded_once_and_a_change_uploads_a_new_archive(tmp_path: Path, monkeypatch) -> None:
    import launcher.storage.local as local_store

    root = _tree(tmp_path / "code", {"main.py": "print(1)\n"})
    store_root = tmp_path / "store"
    monkeypatch.setattr(local_store, "LocalStore", CountingStore)  # the store open_store makes for a path
    CountingStore.puts = []
    target = f"{store_root}/_code/{{content-sha256}}.tar.gz"
    logs: list[str] = []
    files = collect(CodeConfig(dir=str(root)))
    first = ship(files, target, logs.append)
    assert ship(collect(CodeConfig(dir=str(root))), target, logs.append) == first
    assert CountingStore.puts == [f"{first}.tar.gz"], "the second submit of the same content sends nothing"
    assert "nothing to send" in logs[-1]
    (root / "main.py").write_text("print(2)\n")
    second = ship(collect(CodeConfig(dir=str(root))), target, logs.append)
    assert second != first and CountingStore.puts == [f"{first}.tar.gz", f"{second}.tar.gz"]
    assert sorted(p.name for p in (store_root / "_code").iterdir()) == sorted([f"{first}.tar.gz", f"{second}.tar.gz"])


def _spec(tmp_path: Path, **extra) -> object:  # type: ignore[no-untyped-def]
    raw = {
        "name": "prog",
        "code": ".",
        "command": ["python", "train.py"],
        "checkpoint": {"uri": str(tmp_path / "store")},
    }
    return validate_spec({**raw, **extra}, tmp_path / "job.yaml", tmp_path)


def test_code_dot_is_the_spec_files_folder_wherever_launch_runs(tmp_path: Path, monkeypatch) -> None:
    folder = _tree(
        tmp_path / "project", {"job.yaml": "name: prog\ncode: .\ncommand: [python, train.py]\n", "train.py": ""}
    )
    monkeypatch.chdir(tmp_path)
    assert load_spec(folder / "job.yaml").code.dir == str(folder)
    assert load_spec("project/job.yaml").code.dir == str(folder)
    long_form = folder / "long.yaml"
    long_form.write_text("name: prog\ncode: {dir: ., exclude: [data/]}\ncommand: [python, train.py]\n")
    assert load_spec(long_form).code.exclude == ["data/"]


@pytest.mark.parametrize("raw, message", [
    ({"command": None}, "code: ships a program of yours, so name it in command:"),
    ({"code": {"dir": ".", "max_size": "lots"}}, "is not a size"),
    ({"code": {"dir": ".", "requirements": "../reqs.txt"}}, "must be a file inside the code folder"),
    ({"code": {"dir": ".", "exclude": [""]}}, "is not a pattern"),
    ({"code": {"dri": "."}}, "did you mean 'dir'"),
])  # fmt: skip
def test_bad_code_sections_are_one_line(tmp_path: Path, raw: dict, message: str) -> None:
    with pytest.raises(LauncherError, match=message) as err:
        _spec(tmp_path, **raw)
    assert "\n" not in str(err.value)


def test_a_job_without_a_checkpoint_store_has_nowhere_to_ship_code(tmp_path: Path) -> None:
    spec = _spec(tmp_path, checkpoint={})
    with pytest.raises(LauncherError, match="Set checkpoint.uri"):
        code_target(spec)


def test_submit_fills_in_the_code_hash_and_leaves_the_data_placeholder_to_the_data_upload(tmp_path: Path) -> None:
    from launcher.api import Launcher

    _tree(tmp_path, {"train.py": "print('hi')\n"})
    spec = _spec(tmp_path, train={"data": str(tmp_path)})
    plan = Launcher(backend="local").plan(spec)
    argv = plan.request()["process"]["argv"]
    assert f"{tmp_path}/store/_code/{{content-sha256}}.tar.gz" in argv
    assert any("code: " in note and "archived at submit" in note for note in plan.notes)
    staged = stage_code(plan, log=lambda _m: None)
    code_arg = staged.request()["process"]["argv"][staged.request()["process"]["argv"].index("--code") + 1]
    sha = Path(code_arg).name.removesuffix(".tar.gz")
    assert len(sha) == 64 and Path(code_arg).exists()
    assert hashlib.sha256(Path(code_arg).read_bytes()).hexdigest() == sha
    assert (
        staged.request()["docker"]["command"][staged.request()["docker"]["command"].index("--code") + 1]
        == f"/checkpoints/_code/{sha}.tar.gz"
    )


def test_dry_run_lists_what_would_ship_and_refuses_what_must_not(tmp_path: Path) -> None:
    _tree(tmp_path, {"job.yaml": f"name: prog\ncode: .\ncommand: [python, train.py]\ncheckpoint: {{uri: {tmp_path}/runs}}\n",
                     "train.py": "print()\n", "big.bin": b"x" * 5000, ".gitignore": "runs/\n"})  # fmt: skip
    result = CliRunner().invoke(main, ["run", str(tmp_path / "job.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (
        "{content-sha256}.tar.gz" in result.stdout
        and "code: " not in result.stdout.split("notes:")[0].split("payload:")[0]
    )
    assert f"code: {tmp_path}: 4 files, 5.0 KiB; the largest:" in result.stderr
    assert result.stderr.index("big.bin") < result.stderr.index("train.py")
    assert not (tmp_path / "runs").exists(), "a dry run writes nothing"
    (tmp_path / ".env").write_text("TOKEN=abc")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "job.yaml"), "--dry-run"])
    assert result.exit_code != 0 and "look like credentials" in result.stderr and "abc" not in result.stderr


def test_an_unchanged_folder_is_not_even_archived_again_and_a_touched_one_is_checked(tmp_path: Path) -> None:
    root = _tree(tmp_path / "code", {"main.py": "print(1)\n", "lib/util.py": "X = 1\n"})
    target = f"{tmp_path}/store/_code/{{content-sha256}}.tar.gz"
    known = tmp_path / "state" / "code-archives.json"
    logs: list[str] = []
    first = ship(collect(CodeConfig(dir=str(root))), target, logs.append, known=known)
    assert ship(collect(CodeConfig(dir=str(root))), target, logs.append, known=known) == first
    assert "unchanged, already at" in logs[-1]
    os.utime(root / "main.py", (5, 5))  # the same bytes, a new mtime: archived again, found identical, not sent
    assert ship(collect(CodeConfig(dir=str(root))), target, logs.append, known=known) == first
    assert "(same content), nothing to send" in logs[-1]
    (tmp_path / "store" / "_code" / f"{first}.tar.gz").unlink()  # the store lost it: sent again
    assert ship(collect(CodeConfig(dir=str(root))), target, logs.append, known=known) == first
    assert (tmp_path / "store" / "_code" / f"{first}.tar.gz").exists()


# ------------------------------------------------------------------ the launcher's own folders never ship (issue 34)


def _archive_names(plan) -> list[str]:  # type: ignore[no-untyped-def]
    argv = plan.request()["process"]["argv"]
    with tarfile.open(argv[argv.index("--code") + 1]) as tar:
        return sorted(tar.getnames())


def test_the_store_inside_the_code_folder_never_ships(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README's pattern, `code: .` with `checkpoint.uri: runs`, run from the spec's folder: the second archive
    once carried the first, the lease and the checkpoints, and a big last.pt then refused the submit."""
    from launcher.api import Launcher

    project = _tree(tmp_path / "project", {
        "job.yaml": "name: prog\ncode: {dir: ., max_size: 200KiB}\ncommand: [python, train.py]\n"
                    "checkpoint: {uri: runs}\n",
        "train.py": "print('hi')\n", "lib/helper.py": "X = 1\n",
    })  # fmt: skip
    monkeypatch.chdir(project)
    spec = load_spec("job.yaml")
    first = stage_code(Launcher(backend="local").plan(spec), log=lambda _m: None)
    assert _archive_names(first) == ["job.yaml", "lib/helper.py", "train.py"]
    run = project / "runs" / "prog"  # what a run leaves in its store
    _tree(run, {"lease.json": "{}", "manifest.json": "{}", "manifests/00000001.json": "{}",
                "files/00000001/last.pt": b"w" * 300_000})  # fmt: skip
    second = stage_code(Launcher(backend="local").plan(load_spec("job.yaml")), log=lambda _m: None)
    assert _archive_names(second) == ["job.yaml", "lib/helper.py", "train.py"]
    assert _archive_names(second) == _archive_names(first)
    result = CliRunner().invoke(main, ["run", "job.yaml", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "code: " in result.stderr and ": 3 files" in result.stderr
    assert "left out: runs/ (the checkpoint store, checkpoint.uri" in result.stderr
    assert "runs/_code" not in result.stderr and "last.pt" not in result.stderr


def test_the_state_folder_the_data_cache_and_an_old_store_never_ship(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _tree(tmp_path / "project", {
        "train.py": "", ".state/jobs.db": "x", ".cache/datasets/remote/a/x.jpg": "x",
        f"old-store/_code/{'a' * 64}.tar.gz": "x", "old-store/prog/manifest.json": "{}",  # an earlier checkpoint.uri
        "src/_data/table.csv": "x", "src/lease.json": '{"rent": 1}',  # a user's own names: they ship
        "results/prog/manifest.json": "{}", "results/prog/manifests/00000001.json": "{}",  # a run folder on its own
        "data/train/a/1.jpg": "x",  # data is the user's to exclude: it ships unless ignored
    })  # fmt: skip
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(project / ".state"))
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(project / ".cache" / "datasets"))
    spec = validate_spec({"name": "prog", "code": ".", "command": ["python", "train.py"],
                          "checkpoint": {"uri": "s3://bucket/ckpts"}}, project / "job.yaml", tmp_path)  # fmt: skip
    from launcher.staging.code import collect_for

    files = collect_for(spec)
    assert [e.path for e in files.entries] == [
        "data/train/a/1.jpg",
        "src/_data/table.csv",
        "src/lease.json",
        "train.py",
    ]
    assert dict(files.left_out) == {
        ".cache/datasets": "the launcher's dataset cache, $LAUNCHER_DATA_DIR",
        ".state": "the launcher's state folder, $LAUNCHER_STATE_DIR",
        "old-store": "a checkpoint store: it holds _code/",
        "results/prog": "a run folder of a checkpoint store: it holds manifest.json",
    }
    assert "left out: .state/ (the launcher's state folder" in files.summary()


def test_a_store_that_is_the_code_folder_keeps_its_own_parts(tmp_path: Path) -> None:
    project = _tree(tmp_path / "p", {"train.py": "", f"_code/{'b' * 64}.tar.gz": "x", f"_data/{'c' * 64}/x": "x",
                                     "prog/manifest.json": "{}", "prog/manifests/1.json": "{}"})  # fmt: skip
    spec = validate_spec({"name": "prog", "code": ".", "command": ["python", "train.py"],
                          "checkpoint": {"uri": str(project)}}, project / "job.yaml", tmp_path)  # fmt: skip
    from launcher.staging.code import collect_for

    files = collect_for(spec)
    assert [e.path for e in files.entries] == ["train.py"]
    assert [p for p, _ in files.left_out] == ["_code", "_data", "prog"]


# ------------------------------------------------------------------ mistakes found at the dry run (issue 34)


@pytest.mark.parametrize("command, program", [
    (["python", "train.py", "--epochs", "3"], ("file", "train.py")),
    (["python3", "-u", "-W", "ignore", "./src/train.py"], ("file", "src/train.py")),
    (["python", "-m", "pkg.main"], ("module", "pkg.main")),
    (["bash", "run.sh"], ("file", "run.sh")),
    (["./run.sh", "x"], ("file", "run.sh")),
    (["python", "-c", "print(1)"], None),
    (["python", "/opt/app/train.py"], None),
    (["torchrun", "train.py"], None),
])  # fmt: skip
def test_the_program_a_command_runs(command: list[str], program: tuple[str, str] | None) -> None:
    from launcher.staging.code import program_of

    assert program_of(command) == program


def test_a_misspelled_script_fails_the_dry_run_with_the_closest_name(tmp_path: Path) -> None:
    _tree(tmp_path, {"job.yaml": "name: prog\ncode: .\ncommand: [python, trian.py]\ncheckpoint: {uri: runs}\n",
                     "train.py": "", "pkg/__init__.py": "", "pkg/main.py": "", "secret.py": "",
                     ".launcherignore": "secret.py\n"})  # fmt: skip
    result = CliRunner().invoke(main, ["run", str(tmp_path / "job.yaml"), "--dry-run"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"command: trian.py is not among the files that ship from {tmp_path}." in result.stderr
    assert "did you mean train.py?" in result.stderr and result.stdout == ""
    for command, ok in (("[python, -m, pkg.main]", True), ("[python, -m, pkg.mian]", False),
                        ("[python, -m, torch.distributed.run]", True), ("[python, secret.py]", False)):  # fmt: skip
        (tmp_path / "job.yaml").write_text(f"name: prog\ncode: .\ncommand: {command}\ncheckpoint: {{uri: runs}}\n")
        result = CliRunner().invoke(main, ["run", str(tmp_path / "job.yaml"), "--dry-run"])
        assert (result.exit_code == 0) == ok, (command, result.output)
    assert "secret.py" in result.stderr and "an ignore file or code.exclude leaves it out" in result.stderr


def test_a_local_data_folder_that_is_not_there_fails_the_dry_run_and_the_submit(tmp_path: Path) -> None:
    from launcher.api import Launcher

    _tree(tmp_path, {"job.yaml": "name: d\ntrain: {data: datta}\ncheckpoint: {uri: runs}\n", "data/train/a/1.png": ""})
    result = CliRunner().invoke(main, ["run", str(tmp_path / "job.yaml"), "--dry-run"])
    assert result.exit_code == 2 and result.stdout == ""
    assert f"train.data {tmp_path / 'datta'} does not exist." in result.stderr
    with pytest.raises(LauncherError, match="does not exist"):
        Launcher(backend="local").submit(load_spec(tmp_path / "job.yaml"))
    assert not (tmp_path / "runs").exists(), "nothing claimed or written"
