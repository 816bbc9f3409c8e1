"""train.model is checked when a spec loads, from shipped names, without importing torchvision (issue 23)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.errors import LauncherError, SpecError
from launcher.spec import load_spec
from launcher.spec.names import check_model, classification_models, other_task_models


def _load(tmp_path: Path, model: str, extra: str = "", overrides: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    path = tmp_path / "job.yaml"
    path.write_text(f"name: m\ntrain:\n  model: {json.dumps(model)}\n{extra}")
    return load_spec(path, overrides, environ={}, cwd=tmp_path)


def _error(tmp_path: Path, model: str) -> str:
    with pytest.raises(SpecError) as info:
        _load(tmp_path, model)
    return str(info.value)


def test_a_typo_is_refused_with_the_closest_name(tmp_path: Path) -> None:
    message = _error(tmp_path, "resnet5O")
    assert "train.model: 'resnet5O' is not a torchvision classification model; did you mean 'resnet50'?" in message
    assert str(tmp_path / "job.yaml") in message


@pytest.mark.parametrize(
    ("typo", "meant"), [("ResNet50", "resnet50"), ("efficientnet-b0", "efficientnet_b0"), ("vit_b16", "vit_b_16")]
)
def test_case_and_dashes_suggest_the_real_name(tmp_path: Path, typo: str, meant: str) -> None:
    assert f"did you mean '{meant}'?" in _error(tmp_path, typo)


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n.pt", "YOLOv5s", "rtdetr-l"])
def test_yolo_names_say_the_trainer_trains_classification_models_only(tmp_path: Path, name: str) -> None:
    message = _error(tmp_path, name)
    assert (
        "is an Ultralytics model" in message
        and "the built-in trainer trains torchvision classification models only" in message
    )
    assert "train.engine: ultralytics" in message


@pytest.mark.parametrize(
    ("name", "task", "backbone"),
    [
        ("fasterrcnn_resnet50_fpn", "object-detection", "resnet50"),
        ("ssdlite320_mobilenet_v3_large", "object-detection", "mobilenet_v3_large"),
        ("deeplabv3_resnet101", "semantic-segmentation", "resnet101"),
        ("r3d_18", "video", None),
        ("raft_small", "optical-flow", None),
        ("quantized_resnet18", "quantized", "resnet18"),
    ],
)
def test_other_torchvision_tasks_are_named(tmp_path: Path, name: str, task: str, backbone: str | None) -> None:
    message = _error(tmp_path, name)
    assert f"'{name}' is one of torchvision's {task}" in message
    assert "the built-in trainer trains torchvision classification models only" in message
    assert (f"try its backbone '{backbone}'" in message) if backbone else ("backbone" not in message)


def test_a_weights_file_points_at_train_pretrained(tmp_path: Path) -> None:
    assert "name the architecture in train.model (like resnet18) and the file in train.pretrained" in _error(
        tmp_path, "best.pt"
    )


def test_a_name_like_nothing_lists_examples_in_one_short_line(tmp_path: Path) -> None:
    message = _error(tmp_path, "q" * 5000)
    assert "is not a torchvision classification model" in message and "resnet18" in message
    assert "\n" not in message and len(message) < 600


def test_the_set_that_wrote_it_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"--set train.model=yolov8n: train.model: 'yolov8n' is an Ultralytics model"):
        _load(tmp_path, "resnet18", overrides=("train.model=yolov8n",))


@pytest.mark.parametrize("name", classification_models())
def test_every_shipped_name_loads(tmp_path: Path, name: str) -> None:
    assert _load(tmp_path, name).train.model == name


def test_train_pretrained_is_unaffected(tmp_path: Path) -> None:
    weights = tmp_path / "weights" / "best.pt"
    assert _load(tmp_path, "resnet50", "  pretrained: true\n").train.pretrained is True
    spec = _load(tmp_path, "resnet50", f"  pretrained: {weights}\n")
    assert spec.train.pretrained == str(weights)
    relative = _load(tmp_path, "resnet50", "  pretrained: runs/x/last.pt\n").train.pretrained
    assert relative == str(tmp_path / "runs" / "x" / "last.pt")  # from the spec's folder, as every path (issue 34)


def test_the_trainer_refuses_the_same_names_with_the_same_words() -> None:
    """The trainer's own argument parser (in the image) runs the same check, so an old spec gets the same line."""
    from launcher.runtime.train.config import parse_args

    with pytest.raises(
        LauncherError,
        match=r"train.model: 'resnet5O' is not a torchvision classification model; did you mean 'resnet50'\?",
    ):
        parse_args(["model=resnet5O"], environ={})
    assert parse_args(["model=resnet50"], environ={})[0].model == "resnet50"


def test_check_model_returns_the_name() -> None:
    assert check_model("resnet18") == "resnet18"
    with pytest.raises(ValueError, match="did you mean 'resnet18'"):
        check_model("resnet81")


def test_loading_a_spec_imports_neither_torch_nor_torchvision(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("name: m\ntrain: {model: efficientnet_b0}\n")
    probe = (
        "import sys\nfrom launcher.spec import load_spec\n"
        f"spec = load_spec({str(tmp_path / 'job.yaml')!r})\n"
        "try:\n    load_spec(sys.argv[1], ['train.model=resnet5O'])\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'numpy'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "job.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split() == ["SpecError", "[]"], done.stdout + done.stderr


def test_the_shipped_names_are_torchvisions() -> None:
    """The list cannot drift: it is what the trainer's build_model accepts, for the torchvision the image pins."""
    torchvision = pytest.importorskip("torchvision")
    from launcher.runtime.train.model import classification_models as built

    assert list(classification_models()) == sorted(torchvision.models.list_models(module=torchvision.models)) == built()
    for task, names in other_task_models().items():
        assert list(names) == sorted(torchvision.models.list_models(module=getattr(torchvision.models, task))), task
    others = {name for names in other_task_models().values() for name in names}
    assert not set(classification_models()) & others
