"""`train.model`: the names the built-in trainer builds, checked when a spec loads.

The trainer (launcher.runtime.train.model) builds any torchvision
classification model. Their names are shipped data, the keys of
launcher/estimate/data/models.json, so that loading a spec (the dry run)
imports neither torch nor torchvision; tests/launcher/test_model_names.py
keeps them equal to `torchvision.models.list_models(module=torchvision.models)`.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from importlib import resources
from typing import Any

__all__ = [
    "classification_models", "other_task_models", "check_model", "check_yolo_model", "yolo_task_of", "check_weights_url",
    "url_file_name",
]  # fmt: skip

_TASKS = {  # models.json "other_tasks" key -> what such a model does
    "detection": "object-detection",
    "segmentation": "semantic-segmentation",
    "video": "video",
    "optical_flow": "optical-flow",
    "quantization": "quantized (int8 inference)",
}
_YOLO = re.compile(r"^(yolo|rtdetr)", re.IGNORECASE)
# An Ultralytics model: a shipped model YAML (yolo11n.yaml, yolov8s-seg.yaml: built from scratch) or weights (.pt)
_YOLO_FILE = re.compile(r"^(yolo|rtdetr)[A-Za-z0-9_.-]{0,60}\.(yaml|yml|pt)$", re.IGNORECASE)
_YOLO_SUFFIX = {"-seg": "segment", "-cls": "classify", "-pose": "pose", "-obb": "obb"}
_WEIGHTS = (".pt", ".pth", ".ckpt", ".safetensors", ".onnx")
_ONLY = "the built-in trainer trains torchvision classification models only"


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    # resources.files("launcher"), not "launcher.estimate": that package's __init__ imports the estimator
    return json.loads(resources.files("launcher").joinpath("estimate/data/models.json").read_text())


def classification_models() -> tuple[str, ...]:
    """Every name `train.model` accepts, sorted."""
    return tuple(sorted(_table()["models"]))


def other_task_models() -> dict[str, tuple[str, ...]]:
    """torchvision's models for other tasks, by torchvision.models submodule: detection, segmentation, ..."""
    return {task: tuple(names) for task, names in _table()["other_tasks"].items()}


def check_model(name: str) -> str:
    """`name` if the built-in trainer can build it, else ValueError saying what it is and what to write."""
    names = classification_models()
    if name in names:
        return name
    shown = repr(name if len(name) <= 80 else name[:80] + "...")
    for task, members in other_task_models().items():
        if name.lower() in members:
            backbone = _backbone(name.lower(), names)
            hint = f"; for a classifier, try its backbone '{backbone}'" if backbone else ""
            raise ValueError(f"{shown} is one of torchvision's {_TASKS[task]} models, but {_ONLY}{hint}")
    if _YOLO.match(name):
        raise ValueError(
            f"{shown} is an Ultralytics model, but {_ONLY} (like resnet18 or efficientnet_b0); "
            "to train YOLO, set train.engine: ultralytics"
        )
    close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6) if len(name) <= 80 else []
    if close:
        raise ValueError(f"{shown} is not a torchvision classification model; did you mean '{close[0]}'?")
    if name.lower().endswith(_WEIGHTS):
        raise ValueError(
            f"{shown} looks like a weights file; name the architecture in train.model (like resnet18) "
            "and the file in train.pretrained"
        )
    raise ValueError(
        f"{shown} is not a torchvision classification model; {_ONLY}: resnet18, resnet50, efficientnet_b0, "
        "mobilenet_v3_small, vit_b_16, ... (torchvision.models.list_models(module=torchvision.models))"
    )


def _backbone(name: str, names: tuple[str, ...]) -> str | None:
    """The longest classification model named inside `name`: fasterrcnn_resnet50_fpn -> resnet50."""
    inside = [n for n in names if re.search(rf"(^|_){re.escape(n)}(_|$)", name)]
    return max(inside, key=len) if inside else None


# Weights by URL: https anywhere, plain http only to this machine (a local mirror; nothing crosses a network unsigned)
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_URL = re.compile(r"^(https?)://([^/?#@\s]+)(/[^?#\s]*)(\?[^#\s]*)?$", re.IGNORECASE)


def url_file_name(value: str) -> str:
    """The last path segment of a URL or path, without query or fragment: https://h/w/yolo11n.pt?x=1 -> yolo11n.pt."""
    return value.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def check_weights_url(value: str) -> str:
    """`value` if it is an https URL of a file (http only to this machine), else ValueError; the message never shows
    the query, which may hold a token (a presigned URL's signature)."""
    shown = value.split("?", 1)[0][:100]
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@", value):
        raise ValueError("the URL has credentials in it (user:password@); use a URL without them")
    match = _URL.match(value)
    if match is None or match.group(3).endswith("/") or not value.isascii():  # the path must name a file
        raise ValueError(f"{shown!r} is not a URL of a weights file; write it as https://HOST/path/file.pt")
    scheme, host = match.group(1).lower(), match.group(2).lower()
    if scheme == "http" and host.rsplit(":", 1)[0] not in _LOOPBACK and not host.startswith("[::1]"):
        raise ValueError(f"{shown!r} is plain http; use https (plain http is taken only from 127.0.0.1 or localhost)")
    return value


def yolo_task_of(name: str) -> str:
    """The task an Ultralytics model name is for: yolo11n-seg.yaml -> segment, yolo11n.pt -> detect (a URL: its
    file's name)."""
    stem = re.sub(r"\.(yaml|yml|pt)$", "", url_file_name(name).lower())
    return next((task for suffix, task in _YOLO_SUFFIX.items() if stem.endswith(suffix)), "detect")


def check_yolo_model(name: str, task: str | None = None) -> str:
    """`name` if it names an Ultralytics model (YAML or .pt) for `task`, else ValueError saying what to write."""
    if "://" in name and url_file_name(name).lower().endswith(".pt"):  # weights by URL, fetched at submit
        return check_weights_url(name)  # a file name need not say its task: train.task, when set, says it
    if name.startswith("/") and name.lower().endswith(".pt") and "\0" not in name:
        return name  # a file the job reads as it is (a mount; in the image, the weights the submit stored)
    shown = repr(name if len(name) <= 80 else name[:80] + "...")
    if not _YOLO_FILE.match(name):
        raise ValueError(
            f"{shown} is not an Ultralytics model name; the ultralytics engine takes a model YAML (from scratch), "
            ".pt weights by name, like yolo11n.yaml, yolo11n-seg.yaml or yolo11n.pt, or .pt weights by https URL"
        )
    return _check_task(name, task)


def _check_task(name: str, task: str | None) -> str:
    shown = repr(name.split("?", 1)[0][:80])
    if task is not None and yolo_task_of(name) != task:
        raise ValueError(
            f"{shown} is a {yolo_task_of(name)} model, but train.task is {task}; name a {task} model "
            f"(like yolo11n{next((s for s, t in _YOLO_SUFFIX.items() if t == task), '')}.yaml) or "
            "remove train.task"
        )
    return name
