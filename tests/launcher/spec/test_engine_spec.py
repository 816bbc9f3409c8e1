"""train.engine / train.task (issue 25): keys the chosen engine or task has no use for are refused at load
time in one line naming the key and the engine; the ultralytics engine gets the keys a spec sets, by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.api import Launcher
from launcher.backends.local import LocalBackend
from launcher.errors import LauncherError, SpecError
from launcher.spec import JobSpec, load_spec

YOLO = {"engine": "ultralytics", "model": "yolo11n.yaml", "data": "/data/shapes"}


def _load(tmp_path: Path, train: dict, **raw: object) -> JobSpec:
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps({"name": "yolo", "train": train, **raw}))
    return load_spec(path, (), environ={}, cwd=tmp_path)


def _refused(tmp_path: Path, train: dict) -> str:
    with pytest.raises(SpecError) as info:
        _load(tmp_path, train)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_ultralytics_engine_gets_the_keys_the_spec_sets_under_their_own_names(tmp_path: Path) -> None:
    spec = _load(tmp_path, {**YOLO, "epochs": 3, "imgsz": 64, "batch": -1, "cache": "ram", "mosaic": 0.5, "lrf": 0.1})
    assert spec.train.to_args() == [
        "engine=ultralytics",
        "model=yolo11n.yaml",
        "data=/data/shapes",
        "epochs=3",
        "batch=-1",
        "imgsz=64",
        "cache=ram",
        "lrf=0.1",
        "mosaic=0.5",
        "task=detect",
    ]


def test_the_builtin_engine_command_line_has_no_engine_keys(tmp_path: Path) -> None:
    args = _load(tmp_path, {"model": "resnet18"}).train.to_args()
    assert not [a for a in args if a.split("=")[0] in ("engine", "task", "mosaic", "box")]


def test_the_task_follows_the_model_name(tmp_path: Path) -> None:
    spec = _load(tmp_path, {**YOLO, "model": "yolo11n-seg.yaml", "overlap_mask": False})
    assert "task=segment" in spec.train.to_args()


@pytest.mark.parametrize(("train", "words"), [
    ({"model": "resnet18", "mosaic": 0.5}, ["'mosaic'", "builtin engine", "train.engine: ultralytics"]),
    ({"model": "resnet18", "task": "detect"}, ["builtin engine", "'detect'"]),
    ({**YOLO, "overlap_mask": True}, ["'overlap_mask'", "ultralytics engine", "segment only", "task detect"]),
    ({**YOLO, "model": "yolo11n-cls.yaml", "mosaic": 1.0}, ["'mosaic'", "ultralytics engine", "task classify"]),
    ({**YOLO, "task": "segment"}, ["yolo11n.yaml", "detect model", "yolo11n-seg.yaml"]),
    ({"engine": "ultralytics", "data": "/d"}, ["ultralytics engine needs train.model"]),
    ({"engine": "ultralytics", "model": "yolo11n.yaml"}, ["ultralytics engine needs train.data", "data.yaml"]),
    ({**YOLO, "model": "resnet18"}, ["not an Ultralytics model name", "yolo11n.yaml"]),
])  # fmt: skip
def test_a_key_meaningless_to_the_engine_or_task_is_refused_in_one_line(
    tmp_path: Path, train: dict, words: list
) -> None:
    message = _refused(tmp_path, train)
    assert "job.yaml" in message and all(w in message for w in words), message


def test_two_nodes_with_the_ultralytics_engine_are_refused_through_the_feature_check(tmp_path: Path) -> None:
    spec = _load(tmp_path, YOLO, resources={"nodes": 2}, checkpoint={"uri": str(tmp_path / "store")})
    with pytest.raises(LauncherError) as info:
        Launcher(backend=LocalBackend(state_dir=tmp_path / "state")).plan(spec)
    assert str(info.value).startswith(
        "The ultralytics engine does not support multi_node: Ultralytics trains on one node"
    )


def test_the_schema_says_which_keys_each_engine_takes() -> None:
    description = JobSpec.model_json_schema()["$defs"]["TrainConfig"]["description"]
    keys = json.loads(description.split("Keys by engine and task: ", 1)[1])
    assert "mosaic" not in keys["builtin"]["classify"] and "workers" in keys["builtin"]["classify"]
    assert "overlap_mask" in keys["ultralytics"]["segment"] and "overlap_mask" not in keys["ultralytics"]["detect"]
    assert "imgsz" in keys["ultralytics"]["detect"] and "dropout" in keys["ultralytics"]["classify"]


def test_the_estimate_reads_a_yolo_models_gflops_from_its_yaml_and_a_yolo_folders_images(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    from launcher.estimate.model import dataset_size
    from launcher.estimate.throughput import model_gflops
    from launcher.runtime.datasets import write_shapes

    at_640 = model_gflops("yolo11n.yaml", 640)
    assert at_640 is not None and 6.0 < at_640 < 7.0  # Ultralytics' own model summary says 6.6 GFLOPs
    assert model_gflops("yolo11n.yaml", 320) == pytest.approx(at_640 / 4, rel=0.05)
    assert model_gflops("yolo11n-seg.yaml", 640) > at_640 and model_gflops("yolo99z.yaml", 640) is None
    data = write_shapes(tmp_path / "shapes", train=20, val=5)
    spec = _load(tmp_path, {**YOLO, "data": str(data)})
    assert spec.train.image_size == 640  # Ultralytics' default, not the builtin trainer's 224
    size = dataset_size(spec)
    assert size is not None and (size.train_images, size.val_images) == (20, 5)
