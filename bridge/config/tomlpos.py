"""Where things are in a TOML file: map a key path (pydantic's `loc`) to its line.

tomllib gives values but no positions, so a light line scanner records the line of every table header
and `key = value` line under its full path (arrays of tables get their index). It understands what
users write in config and rule files (tables, arrays of tables, dotted keys); for anything it cannot
place it falls back to the nearest enclosing table's line, which is still where the user should look.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bridge.errors import Problem

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_NAME = r"""(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)"""
_KEY = re.compile(rf"^\s*({_NAME}(?:\s*\.\s*{_NAME})*)\s*=")
_PART = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*""")
_SYNTAX_LINE = re.compile(r"\(at line (\d+), column \d+\)")

Path_ = tuple[str | int, ...]


def _split_key(raw: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(raw)]


class TomlPositions:
    """Line numbers (1-based) of table headers and keys, by their full path."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path_, int] = {}
        self._prefix_cache: set[Path_] | None = None
        array_index: dict[tuple[str, ...], int] = {}
        table: list[str | int] = []
        in_multiline = False
        for number, line in enumerate(text.splitlines(), start=1):
            # Skip the inside of multi-line strings, where '=' and '[' mean nothing.
            if in_multiline:
                if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                    in_multiline = False
                continue
            header = _HEADER.match(line)
            if header and not _KEY.match(line):
                names = _split_key(header.group(2))
                table = self._resolve(names, array_index)
                if header.group(1) == "[[":
                    plain = tuple(str(n) for n in names)
                    array_index[plain] = array_index.get(plain, -1) + 1
                    table = [*self._resolve(names[:-1], array_index), names[-1], array_index[plain]]
                self.lines.setdefault(tuple(table), number)
                continue
            key = _KEY.match(line)
            if key:
                path = (*table, *_split_key(key.group(1)))
                self.lines.setdefault(path, number)
                rest = line[key.end() :]
                if rest.count('"""') % 2 == 1 or rest.count("'''") % 2 == 1:
                    in_multiline = True

    @staticmethod
    def _resolve(names: Sequence[str], array_index: dict[tuple[str, ...], int]) -> list[str | int]:
        """Insert the current index after every prefix that is an array of tables (`[rule.email]`)."""
        out: list[str | int] = []
        for i, name in enumerate(names):
            out.append(name)
            prefix = tuple(names[: i + 1])
            if prefix in array_index:
                out.append(array_index[prefix])
        return out

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of the deepest known path along `loc`, skipping parts that are not keys (union tags)."""
        prefixes = self._prefixes()
        best: int | None = None
        path: tuple[str | int, ...] = ()
        for part in loc:
            candidate = (*path, part)
            if candidate in prefixes:
                path = candidate
                best = self.lines.get(path, best)
            # else: a union tag, an index into an inline array or a missing key: stay where we are
        return best

    def _prefixes(self) -> set[Path_]:
        if self._prefix_cache is None:
            self._prefix_cache = {path[:i] for path in self.lines for i in range(1, len(path) + 1)}
        return self._prefix_cache


def syntax_problem(file: str, exc: tomllib.TOMLDecodeError) -> Problem:
    """A TOML syntax error as a located problem."""
    msg = str(exc)
    m = _SYNTAX_LINE.search(msg)
    line = int(m.group(1)) if m else None
    return Problem(file, line, "", f"TOML syntax error: {_SYNTAX_LINE.sub('', msg).strip()}")


def read_toml(path: Path) -> tuple[dict[str, Any] | None, str, list[Problem]]:
    """Read and parse a TOML file: (data or None, text, problems)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, "", [Problem(str(path), None, "", f"cannot read file: {exc.strerror or exc}")]
    except UnicodeDecodeError:
        return None, "", [Problem(str(path), None, "", "file is not UTF-8 text")]
    try:
        return tomllib.loads(text), text, []
    except tomllib.TOMLDecodeError as exc:
        return None, text, [syntax_problem(str(path), exc)]


def loc_to_key(loc: Sequence[str | int]) -> str:
    """`('providers', 'podero', 'wallboxes', 0, 'user_id')` → `providers.podero.wallboxes[0].user_id`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_problems(
    file: str,
    positions: TomlPositions,
    exc: ValidationError,
    *,
    prefix: Sequence[str | int] = (),
    tags: Collection[str] = (),
) -> list[Problem]:
    """Every pydantic error as `FILE:LINE: key: message`, with the line found from its `loc`.

    `tags` are discriminator values pydantic inserts into `loc` (the `podero` in
    `providers.main.podero.client_id`); they are dropped where they are not real keys of the file.
    """
    problems = []
    for err in exc.errors(include_url=False):
        raw = (*prefix, *err["loc"])
        loc: list[str | int] = []
        for part in raw:
            if isinstance(part, str) and part in tags and (*loc, part) not in positions.lines:
                continue
            loc.append(part)
        key_parts = loc
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # our validator's own words, without pydantic's "Value error, "
        problems.append(Problem(file, positions.line_of(loc), loc_to_key(key_parts), msg))
    return problems
