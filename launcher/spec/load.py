"""The hardened YAML reader: size and depth limits, strict scalars, ${VAR} interpolation and --set."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Mapping

import yaml

from launcher.contract import ENTRYPOINT_VARIABLES
from launcher.errors import SpecError
from launcher.spec.messages import _CONTROL, _source
from launcher.spec.train import _CREDENTIALS

__all__ = ["parse_set"]
# Names the image's entrypoint relies on: overriding them would hijack what runs before (or instead of) the job.
# The LAUNCHER_* ones are those the entrypoint sets for the job (launcher.contract); others (a secret named
# LAUNCHER_KIT_TOKEN, LAUNCHER_DATA_DIR for the cache) are the user's to set.
_RESERVED_ENV = re.compile(
    r"^(LD_[A-Z_]*|PATH|PYTHONPATH|PYTHONHOME|PYTHONSTARTUP|PYTHONSAFEPATH|PYTHONINSPECT|"
    + "|".join(sorted(ENTRYPOINT_VARIABLES))
    + r")$"
)
# Characters no spec value needs and that hide what a value says: controls (newline, NUL, ESC) and
# invisible or direction-changing format characters (zero-width space, right-to-left override).
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # half of a UTF-16 pair ("\udc80" in YAML): no text encodes it
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Bounds on what a spec file may be, so that hostile input fails fast instead of
# hanging or exhausting memory: a spec is a few hundred bytes of a few levels.
MAX_SPEC_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000  # values after expanding YAML aliases (a "billion laughs" file stops here)
MAX_STRING = 64 * 1024  # any one value, after ${VAR} interpolation and --set


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "list"}.get(type(value), type(value).__name__)


def _read_yaml(file: Path) -> dict[str, Any]:
    text = _read_text(file)
    try:
        data = _load_yaml(text, str(file))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{file}:{where}: YAML syntax error: {problem}.", "Fix the YAML at that line.") from None
    except RecursionError:
        raise SpecError(
            f"{file}: the YAML is nested too deeply.", f"A job spec needs a few levels, at most {MAX_DEPTH}."
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise SpecError(f"{file}: a value cannot be read: {str(exc).splitlines()[0]}.", "Fix that value.") from None
    except (KeyError, IndexError, TypeError, AttributeError):  # a PyYAML constructor on a tag _check_nodes let through
        raise SpecError(
            f"{file}: a value with an explicit tag (!!...) cannot be read.", "Remove the tag or fix its value."
        ) from None
    if data is None:
        raise SpecError(f"{file} is empty.", "A job spec needs at least 'name:'; see examples/quickstart.yaml.")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(
            f"{file}: the top level is a {kind}, but a job spec must be a mapping of keys to values.",
            "Write 'name: my-job' and the other keys at the top level, without a leading '-'.",
        )
    _check_size(data, file)
    return data


def _load_yaml(text: str, source: str, at: tuple[str, ...] = ()) -> Any:
    """One YAML document, checked by `_check_nodes` before any value is built (`at`: where a --set puts it)."""
    loader = _SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, source, at)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _read_text(file: Path) -> str:
    """The file's text: only a regular file, at most MAX_SPEC_BYTES, in UTF-8.

    Opened non-blocking and checked with fstat before reading, so a named pipe
    or a device (/dev/zero, /dev/stdin) is refused instead of hanging.
    """
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SpecError(f"{file}: no such file.", "Check the path, or start from examples/quickstart.yaml.") from None
    except IsADirectoryError:
        raise SpecError(f"{file} is a directory, not a job spec file.", "Pass the path of a .yaml file.") from None
    except OSError as exc:
        raise SpecError(f"{file}: cannot be read ({exc.strerror}).", "Check the path and its permissions.") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SpecError(f"{file} is a directory, not a job spec file.", "Pass the path of a .yaml file.")
        if not stat.S_ISREG(mode):
            raise SpecError(
                f"{file} is not a regular file (a pipe or a device).",
                "Save the spec to a .yaml file and pass its path.",
            )
        data = _read_at_most(fd, MAX_SPEC_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{file} is larger than {MAX_SPEC_BYTES // 1024} KiB; that is not a job spec.", "Pass the job's .yaml file."
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"{file} is saved as UTF-16.", "Save it as UTF-8.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(f"{file}: line {line}: the file is not UTF-8 text.", "Save it as UTF-8.") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 16, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (the last would silently win), and resolves plain
    scalars with YAML 1.2's core schema instead of PyYAML's YAML 1.1 (see `_check_nodes`)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key '{key_node.value}' appears twice in one mapping; keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]

    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
        tag = self.peek_event().tag
        node = super().compose_scalar_node(anchor)
        node.explicit = tag not in (None, "!")  # type: ignore[attr-defined]  # `!!int 5`, not `5`
        return node


# YAML 1.2's core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), and the merge key PyYAML knows
_TAG = "tag:yaml.org,2002:"
_YAML12 = [
    (_TAG + "bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_TAG + "null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_TAG + "int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        _TAG + "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
    (_TAG + "merge", r"^<<$", "<"),
]
_YAML11 = yaml.resolver.Resolver()
# A plain scalar YAML 1.2 reads as a string where YAML 1.1 read a date, or as a float where 1.1 read a string
# ('1e-3'), means what it says; any other difference ('no', '010', '22:22', '1_000', '0o17') is ambiguous.
_SAME_MEANING = {(_TAG + "timestamp", _TAG + "str"), (_TAG + "str", _TAG + "float"), (_TAG + "value", _TAG + "str")}
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9]")
# What PyYAML's constructors parse without crashing, for a scalar tagged explicitly (`!!int`, `!!bool`)
_EXPLICIT = {
    _TAG + "int": re.compile(r"^[-+]?(?:0|[1-9][0-9]*|0x[0-9a-fA-F]+)$"),
    _TAG + "float": re.compile(_YAML12[3][1] + r"|^[-+]?[0-9]+$"),
    _TAG + "bool": re.compile(r"^(?:yes|no|true|false|on|off)$", re.IGNORECASE),
    _TAG + "timestamp": yaml.constructor.SafeConstructor.timestamp_regexp,
}
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "binary", "timestamp")}
_COLLECTION_TAGS = {_TAG + "map": yaml.MappingNode, _TAG + "set": yaml.MappingNode, _TAG + "seq": yaml.SequenceNode,
                    _TAG + "omap": yaml.SequenceNode, _TAG + "pairs": yaml.SequenceNode}  # fmt: skip


def _ambiguous(value: str, tag: str) -> str | None:
    """What YAML 1.1 would have made of a plain scalar that YAML 1.2 reads otherwise, or None."""
    old = _YAML11.resolve(yaml.ScalarNode, value, (True, False))
    if old == tag and not (tag == _TAG + "int" and _LEADING_ZERO.match(value)):
        return None
    if (old, tag) in _SAME_MEANING:
        return None
    kind = old.rsplit(":", 1)[-1]
    return {"bool": "a boolean", "int": "a number", "float": "a number", "str": "a string"}.get(kind, kind)


def _check_nodes(root: yaml.Node, source: str, at: tuple[str, ...] = ()) -> None:
    """Before any value is built: env values stay exactly as written (strings), a plain key like `on` is the
    string it looks like, and a scalar YAML 1.1 reads differently from 1.2 (`no`, `010`, `22:22`) or an explicit
    tag its constructor cannot parse (`!!bool maybe`, `!!set` on a list) is refused with its key and line."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str, ...], bool]] = [(root, at, False)]
    while stack:
        node, where, is_key = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node, where, is_key, source)
            continue
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                label = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                name = where if key.tag == _TAG + "merge" else (*where, label)
                stack += [(key, (*where, "?"), True), (value, name, False)]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, (*where, str(i)), False) for i, item in enumerate(node.value)]
        _check_collection(node, where, source)


def _node_error(node: yaml.Node, where: tuple[str, ...], source: str, reason: str, fix: str) -> SpecError:
    line = "" if source.startswith("--set") else f" line {node.start_mark.line + 1}:"
    shown = ".".join(_shown_key(part) for part in where)[:200] or "(top level)"
    return SpecError(f"{source}:{line} {shown}: {reason}.", fix)


def _check_scalar(node: yaml.ScalarNode, where: tuple[str, ...], is_key: bool, file: str) -> None:
    text = node.value
    if node.style is None and not getattr(node, "explicit", False):
        if len(where) == 2 and where[0] == "env" and not is_key and node.tag != _TAG + "null":
            node.tag = _TAG + "str"  # 'VERSION: 1.10' is '1.10', 'DEBUG: no' is 'no'
            return
        elif (old := _ambiguous(text, node.tag)) is not None:
            if is_key:
                node.tag = _TAG + "str"  # `on:` is the key 'on' (YAML 1.1 read the boolean true)
                return
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise _node_error(
                node,
                where,
                file,
                f"'{shown}' is read as {old} by YAML 1.1 and differently by YAML 1.2",
                f"Quote it ('{shown}') to mean the text, or write the value plainly (true/false, 10, 90).",
            )
    if node.tag == _TAG + "timestamp" and _EXPLICIT[node.tag].match(text):
        try:
            yaml.constructor.SafeConstructor().construct_yaml_timestamp(node)
        except ValueError as exc:  # a date that does not exist: 2026-13-45
            raise _node_error(
                node, where, file, f"'{text[:40]}' is not a date ({exc})", "Write a real date, or remove the tag."
            ) from None
    pattern = _EXPLICIT.get(node.tag)
    if pattern is not None and not pattern.match(text.replace("_", "") if node.tag != _TAG + "timestamp" else text):
        kind = node.tag.rsplit(":", 1)[-1]
        article = "an" if kind[0] in "aeiou" else "a"
        raise _node_error(
            node,
            where,
            file,
            f"'{text[:40]}' is not a valid YAML !!{kind}",
            f"Write {article} {kind} after !!{kind}, or remove the tag.",
        )
    if node.tag in _COLLECTION_TAGS:
        kind = node.tag.rsplit(":", 1)[-1]
        raise _node_error(node, where, file, f"!!{kind} needs a collection, not a scalar", "Remove the tag.")


def _check_collection(node: yaml.Node, where: tuple[str, ...], file: str) -> None:
    expected = _COLLECTION_TAGS.get(node.tag)
    if node.tag in _SCALAR_TAGS or (expected is not None and not isinstance(node, expected)):
        kind = node.tag.rsplit(":", 1)[-1]
        shape = "mapping" if isinstance(node, yaml.MappingNode) else "list"
        raise _node_error(node, where, file, f"!!{kind} does not fit a {shape}", "Remove the tag.")


def _check_size(data: Any, file: Path) -> None:
    """Refuse trees deeper than MAX_DEPTH or larger than MAX_NODES once aliases are expanded.

    YAML aliases let 800 bytes stand for billions of values; counting with a
    memo per shared object is linear in the file, and the copies later on are
    then bounded too. A self-referencing alias never ends, so it fails the depth check.
    """
    memo: dict[int, int] = {}

    def count(value: Any, depth: int) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        if depth > MAX_DEPTH:
            raise SpecError(
                f"{file}: the YAML is nested more than {MAX_DEPTH} levels deep, or refers to itself.",
                "Flatten it: a job spec needs a few levels.",
            )
        if id(value) in memo:
            return memo[id(value)]
        items = value.values() if isinstance(value, dict) else value
        total = 1
        for item in items:
            total += count(item, depth + 1)
            if total > MAX_NODES:
                raise SpecError(
                    f"{file}: the YAML expands to more than {MAX_NODES} values (aliases repeated).",
                    "Write the spec without nested aliases.",
                )
        memo[id(value)] = total
        return total

    count(data, 0)


def _check_strings(raw: Any, file: Path, sets: Mapping[tuple[str, ...], str], loc: tuple[str, ...] = ()) -> None:
    """Refuse any value longer than MAX_STRING (only ${VAR} or --set can make one, and no key needs it), and
    what no spec value needs: keys that are not strings, binary data, NUL, control and invisible characters
    (an env value or a command argument may hold a newline or a tab), credentials in a URI."""
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, list) else ()
    for key, value in items:
        where = (*loc, str(key))

        def refuse(reason: str, fix: str) -> None:
            shown = ".".join(_shown_key(part) for part in where)[:200]
            raise SpecError(f"{_source(where, file, sets)}: {shown}: {reason}.", fix)

        name = key if loc == ("env",) else value if loc == ("secrets",) else None
        if isinstance(name, str) and _RESERVED_ENV.match(name):  # here, where a --set that wrote it is known
            refuse(
                f"{name} is set by the image (its entrypoint relies on it); overriding it would hijack the job's start",
                "Remove it; install packages with code.requirements instead.",
            )
        if isinstance(raw, dict) and not isinstance(key, str):
            refuse(f"the key {key!r} is a {_kind(key)}, not a string", "Quote the key, like 'true': or '1':.")
        odd_key = isinstance(key, str) and any(p.search(key) for p in (_CONTROL, _INVISIBLE, _SURROGATE))
        if odd_key or (isinstance(key, str) and "\t" in key):
            refuse("the key holds a control or invisible character", "Retype the key in plain characters.")
        if isinstance(value, (bytes, bytearray)):
            refuse("is binary data (!!binary)", "Write the value as text.")
        if isinstance(value, (set, frozenset)):
            refuse("is a set (!!set)", "Write a list: [A, B].")
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                refuse(
                    f"is {len(value)} characters; a spec value may have at most {MAX_STRING}",
                    "Pass large data as a file (train.data, a mount) instead.",
                )
            free_text = len(where) >= 2 and where[0] in ("env", "command")  # a value or argument may span lines
            control = _CONTROL.search(value.replace("\n", "").replace("\r", "") if free_text else value)
            if "\0" in value or control:
                char = "\0" if "\0" in value else control.group()  # type: ignore[union-attr]
                refuse(f"contains the control character {char!r}", "Remove it (a value is one line of plain text).")
            if (found := _SURROGATE.search(value)) is not None:
                refuse(
                    f"contains the lone surrogate U+{ord(found.group()):04X}, which is not a character",
                    "Write the character itself, or remove the escape.",
                )
            if (found := _INVISIBLE.search(value)) is not None:
                refuse(
                    f"contains the invisible character U+{ord(found.group()):04X} (zero-width or right-to-left)",
                    "Retype the value in plain characters.",
                )
            if _CREDENTIALS.match(value.strip()):  # never repeat the value: it holds a secret
                refuse("the URI has credentials in it (user:password@)", "Put credentials in secrets:, not in the URI.")
        _check_strings(value, file, sets, where)


def _shown_key(key: Any) -> str:
    text = str(key)
    if _SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if not (_CONTROL.search(text) or _INVISIBLE.search(text)) else repr(text)[1:-1]


def _interpolate_all(raw: dict[str, Any], environ: Mapping[str, str], file: Path) -> dict[str, Any]:
    """Replace every ${VAR} and ${VAR:-default}; report all missing variables at once."""
    missing: dict[str, str] = {}
    result = _interpolate(raw, environ, (), missing)
    if len(missing) == 1:
        ((name, loc),) = missing.items()
        raise SpecError(
            f"{file}: {loc}: environment variable {name} is not set.", f"Set it, or give a default: ${{{name}:-value}}."
        )
    if missing:
        where = ", ".join(f"{name} (at {loc})" for name, loc in missing.items())
        raise SpecError(
            f"{file}: {len(missing)} environment variables are not set: {where}.",
            f"Set them, or give defaults like ${{{next(iter(missing))}:-value}}.",
        )
    return result


def _interpolate(value: Any, environ: Mapping[str, str], loc: tuple[str, ...], missing: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, environ, (*loc, str(k)), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, environ, (*loc, str(i)), missing) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if default is not None:
            return environ.get(name) or default  # as in shells, ':-' treats an empty variable as unset
        if name in environ:
            return environ[name]
        missing.setdefault(name, ".".join(loc))
        return ""

    return _VAR_RE.sub(substitute, value)


def parse_set(item: str) -> tuple[list[str], Any]:
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise SpecError(f"--set {item!r} is not KEY=VALUE.", "Write it like --set train.epochs=3.")
    if key.count(".") >= MAX_DEPTH:
        raise SpecError(
            f"--set {key.strip()[:100]}...: the key is more than {MAX_DEPTH} levels deep.", "Set a key of the job spec."
        )
    if len(item) > MAX_SPEC_BYTES:
        raise SpecError(f"--set {key.strip()}: the value is longer than {MAX_SPEC_BYTES // 1024} KiB.", "Shorten it.")
    parts = key.strip().split(".")
    try:
        value = _load_yaml(text, f"--set {key.strip()}", tuple(parts)) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    except (KeyError, IndexError, TypeError, AttributeError):
        raise SpecError(
            f"--set {key.strip()}: the value's explicit tag (!!...) cannot be read.", "Remove the tag."
        ) from None
    except (ValueError, RecursionError) as exc:  # an integer of more than 4300 digits, deep nesting
        reason = str(exc).splitlines()[0] if isinstance(exc, ValueError) else "nested too deeply"
        raise SpecError(
            f"--set {key.strip()}: the value cannot be read ({reason}).",
            "Give a plain value, like --set train.epochs=3.",
        ) from None
    if isinstance(value, (dict, list)):
        _check_size(value, Path(f"--set {key.strip()}"))
    return key.strip().split("."), value


def _set_path(raw: dict[str, Any], key: list[str], value: Any, file: Path, item: str = "") -> None:
    node = raw
    for i, part in enumerate(key[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(key[: i + 1])
            raise SpecError(f"--set {'.'.join(key)}: {where} is not a mapping in {file}.", "Set a key that exists.")
        node = child
    node[key[-1]] = value
