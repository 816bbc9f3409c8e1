"""The steps every cloud's image push and log follow share."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from launcher.backend import follow_lines
from launcher.errors import LauncherError
from launcher.state.pushed import push, split_tag


@pytest.mark.parametrize(
    ("image", "expected"),
    [("t", ("t", "latest")), ("t:1", ("t", "1")), ("host:5000/r/t", ("host:5000/r/t", "latest")),
     ("host:5000/r/t:v2", ("host:5000/r/t", "v2"))],
)  # fmt: skip
def test_split_tag_never_takes_a_registry_port_for_a_tag(image: str, expected: tuple[str, str]) -> None:
    assert split_tag(image) == expected


class Docker:
    """The docker SDK's push stream, as the registry answers."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.images, self.events, self.pushed = self, events, []

    def push(
        self, repository: str, tag: str, auth_config: dict[str, str], stream: bool, decode: bool
    ) -> Iterator[dict[str, Any]]:
        self.pushed.append((repository, tag, auth_config))
        return iter(self.events)


def test_push_returns_the_reported_digest_or_one_error_with_the_fix() -> None:
    docker = Docker([{"status": "Pushing"}, {"aux": {"Digest": "sha256:ab"}}])
    assert push(docker, "r/t", "1", {"username": "u", "password": "p"}, "fix it") == "sha256:ab"
    assert docker.pushed == [("r/t", "1", {"username": "u", "password": "p"})]
    with pytest.raises(LauncherError, match=r"Pushing r/t:1 failed: denied\. fix it"):
        push(Docker([{"error": "denied"}]), "r/t", "1", {}, "fix it")
    with pytest.raises(LauncherError, match="returned no digest"):
        push(Docker([{"status": "Pushed"}]), "r/t", "1", {}, "fix it")


def test_follow_reads_the_state_before_each_pass_so_the_last_lines_are_kept() -> None:
    states = iter([False, True])
    batches = iter([["a"], ["b", "c"], ["never"]])
    sleeps: list[float] = []
    lines = list(follow_lines(lambda: next(batches), lambda: next(states), True, sleeps.append, 2.0))
    assert lines == ["a", "b", "c"] and sleeps == [2.0]
    assert list(follow_lines(lambda: ["once"], lambda: pytest.fail("not asked"), False, sleeps.append, 2.0)) == ["once"]
