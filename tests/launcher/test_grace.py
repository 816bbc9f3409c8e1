from __future__ import annotations

from pathlib import Path

from launcher.grace import GRACE_S, checkpoint_bytes, fit_warning, remember_rate, remembered_rate


def test_grace_windows_of_each_platform() -> None:
    assert GRACE_S == {"sagemaker": 120, "vertex": 30, "azureml": 30}


def test_warns_only_when_the_checkpoint_would_not_fit(tmp_path: Path) -> None:
    gb = 1_000_000_000
    assert fit_warning("vertex", gb, rate=10e6) is not None  # 100 s > 30 s
    assert "100 s" in str(fit_warning("vertex", gb, rate=10e6)) and "30 s" in str(fit_warning("vertex", gb, rate=10e6))
    assert fit_warning("sagemaker", gb, rate=10e6) is None  # 100 s < 120 s
    assert fit_warning("azureml", gb, rate=10e6) is not None
    assert fit_warning("local", gb, rate=1e6) is None  # no preemption window locally
    assert fit_warning("vertex", gb, rate=None) is None  # nothing measured yet: nothing to say


def test_rate_is_remembered_in_the_scratch_folder(tmp_path: Path) -> None:
    assert remembered_rate(tmp_path) is None
    remember_rate(tmp_path, 100 << 20, 2.0)
    assert remembered_rate(tmp_path) == (100 << 20) / 2.0
    remember_rate(tmp_path, 1000, 0.5)  # too small to measure bandwidth: the old figure stays
    assert remembered_rate(tmp_path) == (100 << 20) / 2.0
    (tmp_path / "upload-rate.json").write_text("{broken")
    assert remembered_rate(tmp_path) is None


def test_checkpoint_bytes_counts_the_checkpoint_files(tmp_path: Path) -> None:
    (tmp_path / "last.pt").write_bytes(b"x" * 10)
    (tmp_path / "best.pt").write_bytes(b"x" * 5)
    (tmp_path / "results.csv").write_text("a,b\n")
    assert checkpoint_bytes(tmp_path) == 15
    assert checkpoint_bytes(tmp_path / "missing") == 0


def test_the_entrypoint_remembers_the_upload_rate_and_warns_at_the_next_start(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import sys

    from launcher import entrypoint

    save_dir = tmp_path / "job" / "save"
    writer = "import os, sys; open(os.path.join(sys.argv[1], 'last.pt'), 'wb').write(os.urandom(9 << 20))"
    code = entrypoint.main(["--run-name", "r", "--checkpoint-uri", str(tmp_path / "store"), "--save-dir", str(save_dir),
                            "--nproc", "1", "--", sys.executable, "-c", writer, str(save_dir)])  # fmt: skip
    assert code == 0
    scratch = entrypoint.scratch_for(save_dir)
    rate = remembered_rate(scratch)
    assert rate is not None and rate > 0  # the final flush's bandwidth, kept beside the save folder
    capsys.readouterr()
    remember_rate(scratch, 10 << 20, 100.0)  # as if the store took 100 s for 10 MiB
    entrypoint._say_if_too_slow("vertex", save_dir)  # 9 MiB at 0.1 MB/s: ~90 s > 30 s
    assert "more than the 30 s vertex gives" in capsys.readouterr().out
    entrypoint._say_if_too_slow("sagemaker", save_dir)  # ~90 s < 120 s
    assert capsys.readouterr().out == ""
