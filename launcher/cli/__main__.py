"""`python -m launcher.cli ...` is `launch ...` (the detached supervisor runs `python -m launcher.cli supervise RUN`)."""

from launcher.cli import main

main()
