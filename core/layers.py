"""Profiles: partial params files applied as layers over params.yaml when params are loaded.

params.yaml's top-level `profiles:` lists them, applied in order (a later one wins), then the
`--set` overrides: `profiles: [paper, a2d]`, or `--set profiles=[paper,a2d]` on any command. An
entry is a name (profiles/<name>.yaml next to params.yaml) or a path to a YAML file (relative to
params.yaml's folder). A layer sets some keys; a section in it is merged key by key, any other
value (a list, `ablation.variants`) replaces the one below. Nothing is written back: params.yaml
stays as the user wrote it, and `python -m core.profile` prints the result.

This module reads and merges (the `--set` overrides too); core.config validates the result and names, in each one-line
error, the file that set the key at fault (`origin`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import yaml

from core.errors import ParamsError

KEY = "profiles"  # the top-level key of params.yaml that lists the layers
FOLDER = "profiles"  # where a profile named without a path lives, next to params.yaml


def parse_override(item: str) -> tuple[str, Any]:
    """'loss.lcf=false' -> ('loss.lcf', False); the value is read as YAML."""
    if "=" not in item:
        raise ParamsError(f"--set {item}: expected KEY=VALUE, e.g. --set loss.lcf=false")
    key, _, raw = item.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data[a][b][c] = value for key 'a.b.c' (what `--set` and `Params.replace` do)."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamsError(f"--set {key}: unknown params key '{'.'.join(parts[: i + 1])}'")
        node = child
    node[parts[-1]] = value  # unknown leaf keys are caught by validation (extra='forbid')


def read_yaml(path: Path) -> Any:
    """A YAML file's content; a syntax error is one line naming the file and line."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None


def entries(value: Any, source: str) -> list[str]:
    """The `profiles` value as a list of entries (one name alone counts as a list of one)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ParamsError(
            f"{source}: {KEY}: expected a list of profile names or paths such as [paper, a2d], got {value!r}"
        )
    return [v.strip() for v in value]


def profile_file(entry: str, root: Path, source: str) -> Path:
    """profiles/<entry>.yaml for a name; the file itself for a path (relative to `root`)."""
    is_name = "/" not in entry and not entry.endswith((".yaml", ".yml"))
    path = root / FOLDER / f"{entry}.yaml" if is_name else Path(entry).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        known = sorted(p.stem for p in (root / FOLDER).glob("*.yaml"))
        raise ParamsError(f"{source}: {KEY}: no profile {entry!r} ({path} not found; in {FOLDER}/: {', '.join(known)})")
    return path


def label(path: Path, root: Path) -> str:
    """How messages and provenance name a layer: relative to params.yaml's folder when inside it."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def read_layer(path: Path, name: str) -> dict[str, Any]:
    """A profile's content: a mapping of sections that names no other profile (empty: nothing)."""
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{name}: expected a mapping of sections, got {type(data).__name__}")
    if KEY in data:
        raise ParamsError(f"{name}: {KEY}: a profile cannot list profiles; list every layer in params.yaml's {KEY}")
    return data


def apply(
    data: dict[str, Any],
    layer: dict[str, Any],
    name: str,
    origins: dict[str, str],
    is_section: Callable[[str], bool],
    prefix: str = "",
) -> None:
    """Merge `layer` into `data` in place, recording origins[dotted key] = name for each key it sets."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(data.get(key), dict) and is_section(dotted):
            apply(data[key], value, name, origins, is_section, dotted + ".")
            continue
        forget(origins, dotted)
        data[key] = copy.deepcopy(value)
        origins[dotted] = name


def forget(origins: dict[str, str], dotted: str) -> None:
    """A key set again (by a later layer or `--set`): what set it or its sub-keys before no longer counts."""
    for key in [k for k in origins if k == dotted or k.startswith(dotted + ".")]:
        del origins[key]


def origin(loc: str, origins: dict[str, str], default: str) -> str:
    """The file that set the key at `loc`, or the layers that set keys under the section `loc`
    (a check across its keys), else `default` (params.yaml and any --set)."""
    parts = loc.split(".")
    for n in range(len(parts), 0, -1):  # the key itself, or the value it sits in
        hit = origins.get(".".join(parts[:n]))
        if hit:
            return hit
    under = dict.fromkeys(v for k, v in origins.items() if k.startswith(loc + "."))
    return " + ".join(under) if under else default
