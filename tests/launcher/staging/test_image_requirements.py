"""`launch image build --requirements FILE`: the training image plus a program's packages, built offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import main
from tests.conformance.cluster import bridge_address, free_port, wait_port
from tests.docker_base import TRAIN_IMAGE, engine_or_skip, train_image_or_skip
from tests.wheels import tiny_wheel

pytestmark = pytest.mark.docker


def test_the_derived_image_has_the_packages_and_still_runs_the_entrypoint(tmp_path: Path) -> None:
    client = engine_or_skip()
    train_image_or_skip(client)
    wheels = tiny_wheel(tmp_path, "launcher_req_pkg", "0.4.2")
    (tmp_path / "requirements.txt").write_text("launcher_req_pkg==0.4.2\n")
    addr = bridge_address()
    port = free_port(addr)  # the wheelhouse, served on the docker0 address only, as images/build-offline.sh does
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", addr, "--directory", str(wheels)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    tag = "torch-launcher-train:req-test"
    try:
        assert wait_port(addr, port)
        pip_args = f"--no-index --find-links http://{addr}:{port}/ --trusted-host {addr}"
        result = CliRunner().invoke(main, ["image", "build", "--requirements", str(tmp_path / "requirements.txt"),
                                           "--tag", tag, "--from", TRAIN_IMAGE, "--build-arg", f"PIP_ARGS={pip_args}", "-q"])  # fmt: skip
        assert result.exit_code == 0, result.output
        out = client.containers.run(tag, entrypoint=["python", "-c", "import launcher_req_pkg; print(launcher_req_pkg.VERSION)"],
                                    remove=True)  # fmt: skip
        assert out.decode().strip() == "0.4.2"
    finally:
        server.terminate()
        server.wait()
        try:
            client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001 - a failed build left no image
            pass


def test_a_missing_requirements_file_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["image", "build", "--requirements", str(tmp_path / "nope.txt")])
    assert result.exit_code != 0 and "does not exist" in result.output
