"""The trainer inside the training image: `python -m launcher.runtime.train key=value ...`.

Image classification on an ImageFolder dataset with any torchvision model:
AMP (bf16 / fp16 + GradScaler / fp32), DDP under torchrun (NCCL on GPUs,
gloo on CPU), AutoBatch, RAM/disk caches, EMA, warmup + linear/cosine decay,
early stopping, atomic checkpoints and exact resume (also after SIGTERM).
Modules: config (arguments), data, model, optim, autobatch, checkpoint,
dist, loop (the Trainer), report (progress, results.csv/png/json), metrics (the
epoch summary line, TensorBoard, W&B, MLflow).
"""

__all__: list[str] = []
