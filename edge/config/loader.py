"""Load the appliance config from YAML, with errors that name file, line and field."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge.config.checks import cross_check
from edge.config.models import AppConfig
from edge.errors import ConfigError, ConfigProblem

ENV_CONFIG = "SHELFEDGE_CONFIG"


def _node_line(root: yaml.Node | None, path: Sequence[str | int]) -> int | None:
    """1-based line of the deepest YAML node reachable along ``path``."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key, value in node.value:
                if key.value == str(part):
                    nxt = value
                    line = key.start_mark.line + 1
                    break
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _first_duplicate_key(node: yaml.Node | None, path: str = "") -> tuple[str, str, int] | None:
    """(path of the mapping, key, 1-based line of the repeat) for the first duplicate key."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                return path, name, key.start_mark.line + 1
            seen.add(name)
            found = _first_duplicate_key(value, f"{path}.{name}" if path else name)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _first_duplicate_key(item, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


def _allowed_fields(loc: Sequence[str | int]) -> list[str]:
    """Field names allowed where ``loc`` points (for 'did you mean' hints)."""
    model: Any = AppConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        for arg in (ann, *getattr(ann, "__args__", ())):
            if hasattr(arg, "model_fields"):
                model = arg
                break
        else:
            return []
    return list(getattr(model, "model_fields", {}))


def _explain(err: dict[str, Any], loc: Sequence[str | int]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _allowed_fields(loc), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "see `shelfedge config schema`"
        return f"unknown field; {hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_type" and isinstance(err.get("input"), int | float):
        return "expected a string; put the value in quotes (YAML read it as a number)"
    msg = str(err.get("msg", "invalid value"))
    ctx = err.get("ctx") or {}
    if kind == "string_pattern_mismatch" and "pattern" in ctx:
        return f"does not match the expected form {ctx['pattern']}"
    if kind == "literal_error" and "expected" in ctx:
        return f"expected one of {ctx['expected']}"
    return msg


def parse_config(text: str, source: str = "<string>") -> AppConfig:
    """Parse and validate config text; raise ConfigError naming every problem."""
    try:
        root = yaml.compose(text)
        dup = _first_duplicate_key(root)
        if dup is not None:
            where, key, dup_line = dup
            raise ConfigError(source, [ConfigProblem(where, f"duplicate key {key!r}", dup_line)])
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem("", f"not valid YAML: {problem}", line)]) from exc
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("", "expected a mapping at the top level", 1)])
    try:
        cfg = AppConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function"))]
            # Discriminated unions add the tag to the location; it is not a YAML key.
            loc = [p for p in loc if p not in ("ibeacon", "eddystone_uid", "altbeacon")]
            field = ".".join(str(p) for p in loc)
            problems.append(ConfigProblem(field, _explain(dict(err), loc), _node_line(root, loc)))
        raise ConfigError(source, problems) from None
    findings = cross_check(cfg)
    if findings:
        raise ConfigError(
            source,
            [
                ConfigProblem(".".join(str(p) for p in path), msg, _node_line(root, path))
                for path, msg in findings
            ],
        )
    # no mutate: Path("<string>").parent is "." and joining an absolute path returns it, so
    # every variant of this condition yields the same state_dir
    if not cfg.state_dir.is_absolute() and source != "<string>":  # pragma: no mutate
        cfg = cfg.model_copy(update={"state_dir": (Path(source).parent / cfg.state_dir)})
    return cfg


def load_config(path: str | os.PathLike[str]) -> AppConfig:
    """Read and validate a config file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), [ConfigProblem("", f"cannot read file: {exc.strerror}")]) from exc
    try:
        text = raw.decode("utf-8")  # pragma: no mutate (codec names ignore case)
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), [_NotUtf8(exc.start)]) from None
    return parse_config(text, str(p))


class _NotUtf8(ConfigProblem):
    """Renders as ``file: not UTF-8 text (byte N)``: there is no field or line to name."""

    def __init__(self, offset: int) -> None:
        super().__init__("", f"not UTF-8 text (byte {offset})")

    def render(self, path: str) -> str:
        """``file: message``."""
        return f"{path}: {self.message}"


def config_hash(cfg: AppConfig) -> str:
    """Short, stable hash of the effective config (published in the device state)."""
    data = cfg.model_dump(mode="json")
    data["mqtt"].pop("password", None)  # secrets never enter the published hash
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, as committed under firmware_configs/schema/."""
    schema = AppConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://shelfedge.invalid/schema/appliance-config.json"
    return schema
