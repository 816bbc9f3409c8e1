"""Optimizer, learning-rate schedule and EMA of the weights.

- Parameter groups: weight decay only on the weights of convolutions and
  linear layers; never on biases or on any normalisation layer (decaying a
  BatchNorm scale towards zero fights the normalisation, see "Bag of Tricks
  for Image Classification", He et al. 2019, section 3.1).
- `optimizer: auto` (the Ultralytics rule): a long run (more than 10,000
  iterations) uses SGD with the spec's lr0; a short run uses AdamW with
  lr = 0.002 * 5 / (4 + classes), which converges faster on few steps. The
  choice is printed.
- The schedule is a pure function of the step: linear warmup from 0 to lr0,
  then linear or cosine decay whose LAST optimizer step uses exactly
  lr0 * lrf. Being stateless, it resumes exactly and follows `epochs` when a
  run is extended.
- EMA: exponential moving average of every floating-point entry of the state
  dict (BatchNorm statistics included) with a decay ramping up as
  d * (1 - exp(-updates / tau)), so early, noisy weights fade out fast.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

__all__ = [
    "OPTIMIZERS",
    "AUTO_SGD_ITERATIONS",
    "param_groups",
    "build_optimizer",
    "resolve_auto",
    "Schedule",
    "ModelEMA",
]

OPTIMIZERS = ("SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp")
AUTO_SGD_ITERATIONS = 10_000


def param_groups(model, weight_decay: float) -> list[dict]:  # type: ignore[no-untyped-def]
    """[decayed conv/linear weights, everything else (biases, norm layers) undecayed]."""
    import torch.nn as nn  # noqa: PLC0415

    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            is_norm = isinstance(module, norm_types) or "norm" in type(module).__name__.lower()
            (no_decay if is_norm or name == "bias" or p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def resolve_auto(name: str, lr0: float, iterations: int, classes: int) -> tuple[str, float]:
    """The `auto` rule: (optimizer name, lr0) for this run; other names pass through."""
    if name != "auto":
        return name, lr0
    if iterations > AUTO_SGD_ITERATIONS:
        return "SGD", lr0
    return "AdamW", round(0.002 * 5 / (4 + classes), 6)


def build_optimizer(name: str, model, lr0: float, momentum: float, weight_decay: float):  # type: ignore[no-untyped-def]
    import torch  # noqa: PLC0415

    groups = param_groups(model, weight_decay)
    betas = (momentum, 0.999)
    # torch picks the per-tensor Python loop on CPU by default; the fused (Adam, AdamW, SGD) or
    # foreach kernels do the same math in a few calls (the loop was 40% of a resnet18 CPU step)
    fast = {"foreach": True}
    if name == "SGD":
        return torch.optim.SGD(groups, lr=lr0, momentum=momentum, nesterov=momentum > 0, fused=True)
    if name in ("Adam", "AdamW"):
        return getattr(torch.optim, name)(groups, lr=lr0, betas=betas, fused=True)
    if name in ("NAdam", "RAdam"):
        return getattr(torch.optim, name)(groups, lr=lr0, betas=betas, **fast)
    if name == "RMSProp":
        return torch.optim.RMSprop(groups, lr=lr0, momentum=momentum, **fast)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)} or auto")


@dataclass(frozen=True)
class Schedule:
    """lr(step) for steps 0 .. total-1: warmup, then decay ending at lr0 * lrf."""

    lr0: float
    lrf: float
    total: int
    warmup: int
    cosine: bool = False

    @classmethod
    def for_run(
        cls, lr0: float, lrf: float, epochs: int, steps_per_epoch: int, warmup_epochs: float, cosine: bool
    ) -> "Schedule":
        total = max(1, epochs * steps_per_epoch)
        warmup = min(int(round(warmup_epochs * steps_per_epoch)), total - 1)
        return cls(lr0, lrf, total, max(0, warmup), cosine)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr0 * (step + 1) / (self.warmup + 1)
        span = self.total - 1 - self.warmup
        t = min(1.0, (step - self.warmup) / span) if span > 0 else 1.0
        if self.cosine:
            factor = self.lrf + (1 - self.lrf) * 0.5 * (1 + math.cos(math.pi * t))
        else:
            factor = 1 - t * (1 - self.lrf)
        return self.lr0 * factor


class ModelEMA:
    """Exponential moving average of a model's weights, used for validation.

    `step` counts optimizer steps and folds the weights in every `every` of
    them with the decay of that many steps (decay ** n), so the average keeps
    its time constant; `flush` folds in the steps still pending (the trainer
    calls it at the end of each epoch, before validation). Sampling the
    weights every few steps instead of every step is the EMA callbacks'
    `every_n_steps` of Lightning and NeMo; the pending count is part of the
    state, so a resumed run folds in exactly the steps an uninterrupted one does.
    """

    def __init__(self, model, decay: float = 0.9999, tau: float = 2000.0, every: int = 1) -> None:  # type: ignore[no-untyped-def]
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0
        self.every, self.pending = max(1, every), 0
        self._cache: tuple | None = None

    def _pairs(self, model):  # type: ignore[no-untyped-def]
        """(ema floats, model floats, ema ints, model ints), built once per model: state_dict()
        tensors share storage with the live weights, so the lists stay valid across steps."""
        if self._cache is None or self._cache[0] is not model:
            src, dst = _unwrap(model).state_dict(), self.module.state_dict()
            floats = [k for k, v in dst.items() if v.dtype.is_floating_point]
            ints = [k for k, v in dst.items() if not v.dtype.is_floating_point]
            self._cache = (
                model,
                [dst[k] for k in floats],
                [src[k] for k in floats],
                [dst[k] for k in ints],
                [src[k] for k in ints],
            )
        return self._cache[1:]

    def step(self, model) -> None:  # type: ignore[no-untyped-def]
        """One optimizer step done: fold the weights in when `every` steps are pending."""
        self.pending += 1
        if self.pending >= self.every:
            self.flush(model)

    def flush(self, model) -> None:  # type: ignore[no-untyped-def]
        if self.pending:
            self.update(model, self.pending)

    def update(self, model, steps: int = 1) -> None:  # type: ignore[no-untyped-def]
        """Fold the current weights in for `steps` optimizer steps at once."""
        import torch  # noqa: PLC0415

        self.updates += steps
        self.pending = 0
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        ema, cur, ema_int, cur_int = self._pairs(model)
        with torch.no_grad():
            torch._foreach_lerp_(ema, cur, 1.0 - d**steps)  # ema = d^n * ema + (1 - d^n) * cur, one fused call
            for e, c in zip(ema_int, cur_int):  # integer buffers (BatchNorm's num_batches_tracked) follow the model
                e.copy_(c)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.pending = int(state.get("pending", 0))  # checkpoints from before `every` folded in every step


def _unwrap(model):  # type: ignore[no-untyped-def]
    return getattr(model, "module", model)
