"""What runs inside the training image; everything else in `launcher` runs on the user's machine.

    entrypoint   the image's ENTRYPOINT: platform, secrets, checkpoint pull, torchrun, sync, signals
    rendezvous   which node this is, on SageMaker, Vertex AI, Azure ML and local Docker
    secrets      secret references (launcher.contract) resolved into environment variables
    torchrun     torchrun that exits with the first failed worker's own exit code
    grace        each platform's SIGTERM-to-kill window, and whether the checkpoint fits in it
    datasets     `train.data` (built-in, remote URI or mounted bucket) -> a local ImageFolder
    cpu          the CPU thread policy the trainer and `launch profile` share
    train/       the trainer: `python -m launcher.runtime.train key=value ...`

The line between the two sides is launcher.contract (the entrypoint's command
line, the variables and the log line); both sides also share launcher.spec's
TrainConfig and launcher.storage. Code here never imports the user-side
modules (api, cli, backends, estimate, catalog, registry).
"""

__all__: list[str] = []
