from __future__ import annotations

from pathlib import Path

from launcher.runtime.grace import GRACE_S, checkpoint_bytes, fit_warning, remember_rate, remembered_rate
from launcher.storage import open_store


def test_grace_windows_of_each_platform() -> None:
    assert GRACE_S == {"sagemaker": 120, "vertex": 30, "azureml": 30, "slurm": 30}


def test_warns_only_when_the_checkpoint_would_not_fit(tmp_path: Path) -> None:
    gb = 1_000_000_000
    assert fit_warning("vertex", gb, rate=10e6) is not None  # 100 s > 30 s
    assert "100 s" in str(fit_warning("vertex", gb, rate=10e6)) and "30 s" in str(fit_warning("vertex", gb, rate=10e6))
    assert fit_warning("sagemaker", gb, rate=10e6) is None  # 100 s < 120 s
    assert fit_warning("azureml", gb, rate=10e6) is not None
    assert fit_warning("local", gb, rate=1e6) is None  # no preemption window locally
    assert fit_warning("vertex", gb, rate=None) is None  # nothing measured yet: nothing to say


def test_rate_is_remembered_in_the_run_folder_of_the_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "runs" / "r"))
    assert remembered_rate(store) is None
    remember_rate(store, 100 << 20, 2.0)
    assert remembered_rate(store) == (100 << 20) / 2.0
    assert (tmp_path / "runs" / "r" / "upload-rate.json").is_file()
    remember_rate(store, 1000, 0.5)  # too small to measure bandwidth: the old figure stays
    assert remembered_rate(store) == (100 << 20) / 2.0
    (tmp_path / "runs" / "r" / "upload-rate.json").write_text("{broken")
    assert remembered_rate(store) is None


def test_a_store_that_refuses_the_figure_does_not_fail_the_job() -> None:
    class Refusing:
        def put_bytes(self, key: str, data: bytes) -> None:
            raise PermissionError("read-only")

        def get_bytes(self, key: str) -> bytes | None:
            raise PermissionError("no access")

    remember_rate(Refusing(), 100 << 20, 2.0)
    assert remembered_rate(Refusing()) is None


def test_checkpoint_bytes_counts_the_checkpoint_files(tmp_path: Path) -> None:
    (tmp_path / "last.pt").write_bytes(b"x" * 10)
    (tmp_path / "best.pt").write_bytes(b"x" * 5)
    (tmp_path / "results.csv").write_text("a,b\n")
    assert checkpoint_bytes(tmp_path) == 15
    assert checkpoint_bytes(tmp_path / "missing") == 0


def test_the_next_job_of_the_run_on_another_machine_gets_the_figure_and_the_warning(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import sys

    from launcher.runtime import entrypoint
    from launcher.storage.sync import pull_latest

    first = tmp_path / "machine-a" / "save"
    writer = "import os, sys; open(os.path.join(sys.argv[1], 'last.pt'), 'wb').write(os.urandom(9 << 20))"
    code = entrypoint.main(["--run-name", "r", "--checkpoint-uri", str(tmp_path / "store"), "--save-dir", str(first),
                            "--nproc", "1", "--", sys.executable, "-c", writer, str(first)])  # fmt: skip
    assert code == 0
    run = open_store(str(tmp_path / "store" / "r"))
    rate = remembered_rate(run)
    assert rate is not None and rate > 0  # the final flush's bandwidth, kept in the run folder
    capsys.readouterr()
    remember_rate(run, 10 << 20, 100.0)  # as if the store took 100 s for 10 MiB
    second = tmp_path / "machine-b" / "save"  # a new job: a new folder, nothing of the first job's scratch
    pull_latest(str(tmp_path / "store"), "r", second)
    entrypoint._say_if_too_slow("vertex", second, run)  # 9 MiB at 0.1 MB/s: ~90 s > 30 s
    assert "more than the 30 s vertex gives" in capsys.readouterr().out
    entrypoint._say_if_too_slow("sagemaker", second, run)  # ~90 s < 120 s
    assert capsys.readouterr().out == ""


def test_the_figure_is_not_taken_for_a_checkpoint_file(tmp_path: Path) -> None:
    from launcher.storage.sync import plain_manifest

    remember_rate(open_store(str(tmp_path)), 100 << 20, 2.0)
    assert plain_manifest(tmp_path) is None  # a run folder holding only its own files is no plain checkpoint
    (tmp_path / "last.pt").write_bytes(b"w")
    assert set(plain_manifest(tmp_path).files) == {"last.pt"}  # type: ignore[union-attr]
