"""The YAML dialect of scenario files, and reading one safely.

`_UniqueKeyLoader` is a SafeLoader that refuses duplicate keys and reads `1e-3` as a number;
`_Dumper` writes what it reads back. `read_yaml` parses a file or raises ScenarioError naming it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem, ScenarioError, _fmt_input


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent last-wins is a classic scenario bug) and
    reads `1e-3` as a number, as YAML 1.2 and every user do (PyYAML's YAML 1.1 reads a string)."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict:
    own: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a key must be a plain name (got {_fmt_input(key)})",
                key_node.start_mark,
            ) from None
        if key in own:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        own[key] = True
    # `<<: *anchor` merge keys: the merged pairs come first, the mapping's own keys override them
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        mapping[loader.construct_object(key_node, deep=deep)] = loader.construct_object(
            value_node, deep=deep
        )
    return mapping


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes what _UniqueKeyLoader would read as a number (a name like `1e5`)."""


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
for _cls in (_UniqueKeyLoader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789."))


# a scenario (or catalog) file is at most this large: 1 MB, thousands of times a real one
MAX_SCENARIO_BYTES = 1_000_000

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int) -> str | None:
    """Why a file of this mode is not read (None: a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a scenario file"
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"is {kind}, not a regular file: scenarios are read from regular files only"


def _too_large(size: int) -> str:
    return f"is {size} bytes, more than the {MAX_SCENARIO_BYTES} (1 MB) a scenario file may have"


def read_bounded(path: str | Path) -> bytes:
    """The bytes of a regular file of at most MAX_SCENARIO_BYTES, or ScenarioError naming it.

    Never blocks and never reads unbounded: a FIFO, a device (/dev/zero), a socket or a directory
    is refused from its stat before it is opened, the open does not wait for a FIFO's writer (one
    swapped in meanwhile is refused by fstat) and at most the limit and one byte are read."""
    file = str(path)

    def refuse(message: str) -> ScenarioError:
        return ScenarioError(file, [Problem("", message)])

    try:
        why = _not_regular(os.stat(path).st_mode)
        if why:
            raise refuse(why)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise refuse("no such file") from None
    except (OSError, ValueError) as exc:
        raise refuse(f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        st = os.fstat(fd)
        why = _not_regular(st.st_mode)
        if why:
            raise refuse(why)
        if st.st_size > MAX_SCENARIO_BYTES:
            raise refuse(_too_large(st.st_size))
        chunks, got = [], 0
        while got <= MAX_SCENARIO_BYTES:
            chunk = os.read(fd, MAX_SCENARIO_BYTES + 1 - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > MAX_SCENARIO_BYTES:  # it grew while being read
            raise refuse(_too_large(got))
        return b"".join(chunks)
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file (duplicate keys refused) or raise ScenarioError naming the file. Only a
    regular file of at most MAX_SCENARIO_BYTES is read (`read_bounded`)."""
    file = str(path)
    data = read_bounded(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            file, [Problem("", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    if not text.strip():
        raise ScenarioError(
            file, [Problem("", "the file is empty (expected a mapping of scenario fields)")]
        )
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = ", ".join(
            x for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x
        )
        raise ScenarioError(
            file, [Problem("", f"invalid YAML{where}: {what or str(exc).splitlines()[0]}")]
        ) from None
    except RecursionError:
        raise ScenarioError(file, [Problem("", "invalid YAML: nested too deeply")]) from None
