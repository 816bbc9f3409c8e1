"""Models: any torchvision classification model, optionally with pretrained weights.

`pretrained: true` loads torchvision's default weights (downloaded once into
the torch hub cache, `$TORCH_HOME/hub/checkpoints`); `pretrained: PATH` loads
a local state dict (or one of this trainer's checkpoints). The classifier
head is replaced to fit the dataset's classes; tensors whose shapes do not
match (the old head) are skipped and counted.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from launcher.errors import LauncherError

__all__ = ["classification_models", "build_model", "replace_head", "load_weights"]


def classification_models() -> list[str]:
    import torchvision  # noqa: PLC0415

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_model(name: str, classes: int, pretrained: bool | str):  # type: ignore[no-untyped-def]
    import torchvision  # noqa: PLC0415

    names = classification_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        raise LauncherError(f"train.model {name!r} is not a torchvision classification model.", hint.capitalize())
    if pretrained is True:
        model = _pretrained(name)
        replace_head(model, classes)
        return model
    model = torchvision.models.get_model(name, weights=None, num_classes=classes)
    if isinstance(pretrained, str) and pretrained:
        loaded, skipped = load_weights(model, Path(pretrained))
        print(
            f"[train] loaded {loaded} tensors from {pretrained} ({skipped} skipped: shape or name mismatch)", flush=True
        )
    return model


def _pretrained(name: str):  # type: ignore[no-untyped-def]
    import torchvision  # noqa: PLC0415

    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a torn download a RuntimeError
        file = weights.url.rsplit("/", 1)[-1]
        raise LauncherError(
            f"could not get the pretrained weights of {name} ({type(exc).__name__}: {exc}).",
            f"Connect to the internet once, or copy {file} from {weights.url} into $TORCH_HOME/hub/checkpoints/ "
            "(default ~/.cache/torch/hub/checkpoints/), or set train.pretrained to a local state dict path.",
        ) from None


def replace_head(model, classes: int) -> None:  # type: ignore[no-untyped-def]
    """Swap the last Linear (or, for SqueezeNet, the last Conv2d) for one with `classes` outputs."""
    import torch.nn as nn  # noqa: PLC0415

    modules = list(model.named_modules())
    linear = [(n, m) for n, m in modules if isinstance(m, nn.Linear)]
    name, old = linear[-1] if linear else [(n, m) for n, m in modules if isinstance(m, nn.Conv2d)][-1]
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, classes, old.kernel_size, old.stride, old.padding)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], new)


def load_weights(model, path: Path) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    import torch  # noqa: PLC0415

    if not path.is_file():
        raise LauncherError(
            f"train.pretrained {str(path)!r} does not exist.", "Give the path of a state dict file, or true."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise LauncherError(
            f"train.pretrained {str(path)!r} is not a loadable state dict ({exc}).",
            "Save one with torch.save(model.state_dict(), path).",
        ) from None
    if isinstance(state, dict) and isinstance(state.get("ema"), dict):
        state = state["ema"]["module"]  # one of our checkpoints: its EMA weights are the good ones
    own = model.state_dict()
    fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fit, strict=False)
    return len(fit), len(state) - len(fit)
