"""Pretrained weights fetched at submit and stored by content (issue 33): from a loopback HTTP server, an
Ultralytics asset name (through a mirror) and S3 (moto); once per content; the errors, in one line, without a
URL's query; and the image's side, which reads them from the store and checks their sha256."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from launcher.api import Launcher
from launcher.backends.local import LocalBackend
from launcher.errors import LauncherError, SpecError
from launcher.runtime import weights as runtime_weights
from launcher.spec import validate_spec
from launcher.staging.weights import asset_url, stage_weights, store_weights
from tests.http_files import FileServer, serve_folder

SECRET = "s3cr3t-token"


def weights_bytes(size: int = 4000) -> bytes:
    """A zip archive, as torch.save writes one (what the fetch checks), `size` bytes or so."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", os.urandom(size))
    return out.getvalue()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FileServer, Path]]:
    folder = tmp_path / "www"
    (folder / "w").mkdir(parents=True)
    (folder / "w" / "yolo11n.pt").write_bytes(weights_bytes())
    with serve_folder(folder) as server:
        yield server, folder


def _yolo_spec(tmp_path: Path, model: str, **extra: Any) -> Any:
    keys = {"name": "yolo-w", "train": {"engine": "ultralytics", "model": model, "data": str(tmp_path / "shapes")},
            "checkpoint": {"uri": str(tmp_path / "store")}, **extra}  # fmt: skip
    return validate_spec(keys, None, tmp_path)


def _plan(tmp_path: Path, spec: Any) -> Any:
    return Launcher(backend=LocalBackend(state_dir=tmp_path / "jobs")).plan(spec, "yolo-w-1")


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"LAUNCHER_STATE_DIR": str(tmp_path / "state"), **more}


def _train_args(plan: Any) -> tuple[list[str], list[str]]:
    request = plan.request()
    return request["docker"]["command"], request["process"]["argv"]


def test_a_url_is_fetched_once_at_submit_and_stored_by_content(tmp_path: Path, served: Any) -> None:
    server, folder = served
    url = server.url("w/yolo11n.pt") + f"?token={SECRET}"
    plan = _plan(tmp_path, _yolo_spec(tmp_path, url))
    note = next(n for n in plan.notes if n.startswith("train.model"))
    assert "fetched at submit" in note and f"{tmp_path}/store/_weights/{{content-sha256}}.pt" in note
    assert SECRET not in plan.to_yaml(), "the URL's query never reaches the plan"
    docker, process = _train_args(plan)
    assert "model=/checkpoints/_weights/{content-sha256}.pt" in docker

    lines: list[str] = []
    staged = stage_weights(plan, log=lines.append, environ=_env(tmp_path))
    sha = hashlib.sha256((folder / "w" / "yolo11n.pt").read_bytes()).hexdigest()
    stored = tmp_path / "store" / "_weights" / f"{sha}.pt"
    assert stored.read_bytes() == (folder / "w" / "yolo11n.pt").read_bytes()
    docker, process = _train_args(staged)
    assert f"model=/checkpoints/_weights/{sha}.pt" in docker, docker
    assert f"model={stored}" in process, process
    assert server.requests["GET /w/yolo11n.pt?token=" + SECRET] == 1
    assert not any(SECRET in line for line in lines), lines

    # a second submit: the server is asked for the headers only, and nothing is written to the store
    before = stored.stat().st_mtime_ns
    lines.clear()
    again = stage_weights(_plan(tmp_path, _yolo_spec(tmp_path, url)), log=lines.append, environ=_env(tmp_path))
    assert _train_args(again) == _train_args(staged)
    assert server.requests["GET /w/yolo11n.pt?token=" + SECRET] == 1, server.requests
    assert stored.stat().st_mtime_ns == before
    assert any("nothing to fetch or send" in line for line in lines), lines


def test_the_same_weights_from_a_new_url_are_not_sent_again(tmp_path: Path, served: Any) -> None:
    server, folder = served
    (folder / "mirror").mkdir()
    (folder / "mirror" / "yolo11n.pt").write_bytes((folder / "w" / "yolo11n.pt").read_bytes())
    stage_weights(_plan(tmp_path, _yolo_spec(tmp_path, server.url("w/yolo11n.pt"))), log=print, environ=_env(tmp_path))
    lines: list[str] = []
    spec = _yolo_spec(tmp_path, server.url("mirror/yolo11n.pt"))
    stage_weights(_plan(tmp_path, spec), log=lines.append, environ=_env(tmp_path))
    assert any("same content), nothing to send" in line for line in lines), lines
    assert len(list((tmp_path / "store" / "_weights").iterdir())) == 1


def test_an_ultralytics_asset_name_comes_from_its_release_or_a_mirror(tmp_path: Path, served: Any) -> None:
    pytest.importorskip("ultralytics")
    server, folder = served
    (folder / "assets").mkdir()
    (folder / "assets" / "yolo11n-seg.pt").write_bytes(weights_bytes())
    assert asset_url("yolo11n.pt", {}) == "https://github.com/ultralytics/assets/releases/download/v8.4.0/yolo11n.pt"
    assert asset_url("yolo99z.pt", {}) is None
    spec = _yolo_spec(tmp_path, "yolo11n-seg.pt")
    docker, _ = _train_args(_plan(tmp_path, spec))
    assert "task=segment" in docker, "the task still comes from the asset's name"
    staged = stage_weights(_plan(tmp_path, spec), log=print,
                           environ=_env(tmp_path, LAUNCHER_WEIGHTS_MIRROR=server.url("assets")))  # fmt: skip
    assert server.requests["GET /assets/yolo11n-seg.pt"] == 1
    assert "{content-sha256}" not in str(staged.request())
    with pytest.raises(LauncherError, match="is not one of Ultralytics' released weights") as err:
        stage_weights(_plan(tmp_path, _yolo_spec(tmp_path, "yolo99z.pt")), log=print, environ=_env(tmp_path))
    assert "yolo99z.yaml" in str(err.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("path", "content", "env", "expected"),
    [
        ("w/missing.pt", None, {}, "was not found (HTTP 404)"),
        ("w/page.pt", b"<!DOCTYPE html><html>sign in</html>", {}, "is not a PyTorch weights file (a web page)"),
        ("w/empty.pt", b"", {}, "is not a PyTorch weights file (empty)"),
        (
            "w/big.pt",
            weights_bytes(5000),
            {"LAUNCHER_WEIGHTS_MAX_GB": "0.000001"},
            "is 5.0 KiB, more than the 1.0 KiB accepted",
        ),
        ("w/ok.pt", weights_bytes(), {"LAUNCHER_WEIGHTS_MAX_GB": "lots"}, "not a size in GiB"),
    ],
)
def test_a_bad_download_is_one_line_without_the_query(
    tmp_path: Path, served: Any, path: str, content: bytes | None, env: dict[str, str], expected: str
) -> None:
    server, folder = served
    if content is not None:
        (folder / path).write_bytes(content)
    url = server.url(path) + f"?sig={SECRET}"
    with pytest.raises(LauncherError) as err:
        stage_weights(_plan(tmp_path, _yolo_spec(tmp_path, url)), log=print, environ=_env(tmp_path, **env))
    text = str(err.value)
    assert expected in text and SECRET not in text and "\n" not in text, text
    assert not (tmp_path / "store" / "_weights").exists(), "nothing is stored"


def test_an_unreachable_server_and_a_web_page_by_content_type(tmp_path: Path, served: Any) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/w/yolo11n.pt?sig={SECRET}"
    with pytest.raises(LauncherError, match=r"could not reach http://127\.0\.0\.1:\d+/w/yolo11n\.pt\?\.\.\. ") as err:
        store_weights("train.model", url, f"{tmp_path}/store/_weights/{{content-sha256}}.pt", print, _env(tmp_path))
    assert SECRET not in str(err.value)
    server, folder = served
    (folder / "login.html").write_text("<html>sign in</html>")
    spec = validate_spec({"name": "r18", "train": {"pretrained": server.url("login.html")},
                          "checkpoint": {"uri": str(tmp_path / "store")}}, None, tmp_path)  # fmt: skip
    with pytest.raises(LauncherError, match="is a web page, not a weights file"):
        stage_weights(_plan(tmp_path, spec), log=print, environ=_env(tmp_path))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://example.com/w.pt", "plain http; use https"),
        ("https://user:pw@example.com/w.pt", "credentials in it"),
        ("https://example.com/", "is not a URL of a weights file"),
    ],
)
def test_weights_urls_are_checked_when_the_spec_loads(tmp_path: Path, value: str, expected: str) -> None:
    for train in ({"pretrained": value}, {"engine": "ultralytics", "model": value.replace("/w.pt", "/yolo.pt")}):
        if train.get("model", "").endswith("/"):
            continue  # not a .pt name: a model name error, tested elsewhere
        with pytest.raises(SpecError, match=expected.replace("(", r"\(")) as err:
            validate_spec({"name": "w", "train": train, "checkpoint": {"uri": "runs"}}, None, tmp_path)
        assert "pw@" not in str(err.value)


def test_a_job_without_a_store_has_nowhere_to_keep_the_weights(tmp_path: Path) -> None:
    spec = validate_spec({"name": "w", "train": {"pretrained": "https://example.com/r18.pth"}}, None, tmp_path)
    with pytest.raises(LauncherError, match="stored in the run's checkpoint store, and this job has none"):
        _plan(tmp_path, spec)


def test_a_weights_url_names_the_model_and_train_task_says_its_task(tmp_path: Path) -> None:
    spec = _yolo_spec(tmp_path, "https://example.com/runs/best.pt")
    assert spec.train.yolo_task() == "detect"
    spec = _yolo_spec(tmp_path, "https://example.com/runs/best.pt")
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"task": "segment"})})
    assert "task=segment" in _train_args(_plan(tmp_path, spec))[0]
    assert "model=yolo11n.yaml" in _train_args(_plan(tmp_path, _yolo_spec(tmp_path, "yolo11n.yaml")))[0]


# ------------------------------------------------------------------ S3 (moto): the built-in trainer's pretrained


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    moto = pytest.importorskip("moto")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with moto.mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="ckpts")
        client.create_bucket(Bucket="models")
        yield client


def test_pretrained_from_s3_is_copied_at_submit_and_read_by_the_job(tmp_path: Path, aws: Any) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from launcher.runtime.train.model import build_model

    source = build_model("resnet18", 10, False)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    aws.put_object(Bucket="models", Key="r18/weights.pth", Body=buffer.getvalue())
    sha = hashlib.sha256(buffer.getvalue()).hexdigest()
    spec = validate_spec({"name": "r18", "train": {"pretrained": "s3://models/r18/weights.pth"},
                          "checkpoint": {"uri": "s3://ckpts/runs"}}, None, tmp_path)  # fmt: skip
    plan = _plan(tmp_path, spec)
    assert "pretrained=s3://ckpts/runs/_weights/{content-sha256}.pth" in _train_args(plan)[0]
    lines: list[str] = []
    staged = stage_weights(plan, log=lines.append, environ=_env(tmp_path), s3=aws)
    command = [a for a in _train_args(staged)[0] if a.startswith("pretrained=")]
    assert command == [f"pretrained=s3://ckpts/runs/_weights/{sha}.pth"]
    assert aws.head_object(Bucket="ckpts", Key=f"runs/_weights/{sha}.pth")["ContentLength"] == len(buffer.getvalue())
    lines.clear()
    stage_weights(_plan(tmp_path, spec), log=lines.append, environ=_env(tmp_path), s3=aws)
    assert any("nothing to fetch or send" in line for line in lines), lines

    # the image's side: read from the store, checked, loaded by the trainer
    data = {"LAUNCHER_DATA_DIR": str(tmp_path / "data")}
    train = runtime_weights.stage(("train", "model=resnet18", *command), data)
    local = Path(train[-1].removeprefix("pretrained="))
    assert local.read_bytes() == buffer.getvalue() and local.is_relative_to(tmp_path / "data")
    model = build_model("resnet18", 10, str(local))
    assert torch.equal(model.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])
    assert runtime_weights.stage(("train", *command), data) == ("train", f"pretrained={local}"), "fetched once"

    aws.put_object(Bucket="ckpts", Key=f"runs/_weights/{sha}.pth", Body=b"PK\x03\x04 swapped")
    with pytest.raises(LauncherError, match="do not match their name"):
        runtime_weights.stage(("train", *command), {"LAUNCHER_DATA_DIR": str(tmp_path / "other")})
    assert not list((tmp_path / "other" / "weights").iterdir()), "nothing unchecked is left for a later start"


def test_a_file_of_this_machine_is_copied_into_the_store_of_a_job_on_a_cloud(tmp_path: Path, aws: Any) -> None:
    file = tmp_path / "w" / "best.pt"
    file.parent.mkdir()
    file.write_bytes(weights_bytes())
    keys = {"name": "r18", "train": {"pretrained": "w/best.pt"}, "checkpoint": {"uri": "s3://ckpts/runs"},
            "aws": {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/SageMakerRole"}}  # fmt: skip
    spec = validate_spec(keys, None, tmp_path)
    plan = Launcher(backend="aws").plan(spec, "r18-1")
    assert any(n.startswith(f"train.pretrained {file} is copied at submit from this machine") for n in plan.notes)
    assert str(file) not in str(plan.request()), "the job never gets a path of this machine"

    lines: list[str] = []
    staged = stage_weights(plan, log=lines.append, environ=_env(tmp_path), s3=aws)
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    assert f"pretrained=s3://ckpts/runs/_weights/{sha}.pt" in str(staged.request())
    assert aws.get_object(Bucket="ckpts", Key=f"runs/_weights/{sha}.pt")["Body"].read() == file.read_bytes()
    assert not any("fetching" in line for line in lines), lines

    lines.clear()  # the same file again: its size and modification time say it is unchanged; nothing is read or sent
    stage_weights(Launcher(backend="aws").plan(spec, "r18-2"), log=lines.append, environ=_env(tmp_path), s3=aws)
    assert any("nothing to fetch or send" in line for line in lines), lines

    file.write_bytes(weights_bytes(5000))  # retrained: new content, a new object; the old one stays for its runs
    again = stage_weights(Launcher(backend="aws").plan(spec, "r18-3"), log=print, environ=_env(tmp_path), s3=aws)
    new = hashlib.sha256(file.read_bytes()).hexdigest()
    assert new != sha and f"pretrained=s3://ckpts/runs/_weights/{new}.pt" in str(again.request())
    keys_there = {o["Key"] for o in aws.list_objects_v2(Bucket="ckpts", Prefix="runs/_weights/")["Contents"]}
    assert keys_there == {f"runs/_weights/{sha}.pt", f"runs/_weights/{new}.pt"}


def test_a_file_of_this_machine_is_mounted_by_the_local_backend_and_needs_no_store(tmp_path: Path) -> None:
    file = tmp_path / "best.pt"
    file.write_bytes(weights_bytes())
    spec = validate_spec({"name": "r18", "train": {"pretrained": "best.pt"}}, None, tmp_path)
    plan = _plan(tmp_path, spec)
    docker, process = _train_args(plan)
    assert "pretrained=/weights/best.pt" in docker and f"pretrained={file}" in process
    assert plan.request()["docker"]["volumes"][str(file)] == {"bind": "/weights/best.pt", "mode": "ro"}
    assert not any(n.startswith("train.pretrained") for n in plan.notes), "nothing is copied"
    assert stage_weights(plan, log=print, environ=_env(tmp_path)) is plan


def test_a_missing_s3_object_is_one_line(tmp_path: Path, aws: Any) -> None:
    spec = validate_spec({"name": "r18", "train": {"pretrained": "s3://models/nothing.pth"},
                          "checkpoint": {"uri": "s3://ckpts/runs"}}, None, tmp_path)  # fmt: skip
    with pytest.raises(LauncherError, match=r"train.pretrained s3://models/nothing.pth is not in that store"):
        stage_weights(_plan(tmp_path, spec), log=print, environ=_env(tmp_path), s3=aws)


def test_a_program_of_your_own_is_left_alone(tmp_path: Path) -> None:
    command = ("python", "train.py", "pretrained=/x/_weights/" + "a" * 64 + ".pt")
    assert runtime_weights.stage(command, {}) == command


def test_an_absolute_weights_path_is_read_as_it_is_but_never_a_system_folder(tmp_path: Path) -> None:
    spec = _yolo_spec(tmp_path, "/srv/weights/yolo11n-seg.pt")
    docker, process = _train_args(_plan(tmp_path, spec))
    assert "model=/srv/weights/yolo11n-seg.pt" in process and "task=segment" in process
    assert not any(n.startswith("train.model") for n in _plan(tmp_path, spec).notes), "nothing is fetched"
    with pytest.raises(SpecError, match="name a weights file of your own"):
        _yolo_spec(tmp_path, "/etc/yolo11n.pt")
