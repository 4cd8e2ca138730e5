"""Config loading: the demo store is valid; mistakes name file, line and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import json_schema, load_config, parse_config
from edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "firmware_configs" / "stores" / "demo-store.yaml"
SCHEMA = ROOT / "firmware_configs" / "schema" / "appliance-config.schema.json"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60
    )


def test_demo_store_is_valid_and_realistic() -> None:
    cfg = load_config(DEMO)
    assert len(cfg.store.zones) >= 8
    assert len(cfg.store.beacons) >= 8
    assert len(cfg.store.screens) == 1
    kinds = {b.identity.kind for b in cfg.store.beacons}
    assert kinds == {"ibeacon", "eddystone_uid", "altbeacon"}


def test_validate_cli_ok() -> None:
    res = _cli("config", "validate", str(DEMO))
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout


def test_typo_in_field_name_gives_line_and_hint(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("  raw_retention_s: 30", "  raw_retension_s: 30")
    bad = tmp_path / "typo.yaml"
    bad.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "raw_retension_s" in ln)
    res = _cli("config", "validate", str(bad))
    assert res.returncode == 1
    first = res.stderr.splitlines()[0]
    assert first.startswith(f"{bad}:{line}: privacy.raw_retension_s: unknown field")
    assert "did you mean 'raw_retention_s'" in first


def test_zone_with_unknown_beacon_gives_line(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("beacons: [b-snacks,", "beacons: [b-snackz,")
    bad = tmp_path / "ref.yaml"
    bad.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "b-snackz" in ln)
    res = _cli("config", "validate", str(bad))
    assert res.returncode == 1
    assert res.stderr.splitlines()[0].startswith(
        f"{bad}:{line}: store.zones.6.beacons.0: unknown beacon 'b-snackz'"
    )


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("  k: 5", "  k: 1", "privacy.k"),
        ("rotation: 0", "rotation: 45", "display.rotation"),
        (
            "{id: screen-coffee, zone: coffee}",
            "{id: screen-coffee, zone: cofee}",
            "store.screens.0.zone",
        ),
        ("url: https://coupons.example.com/c/bakery-morning", "url: http://x", "campaigns.1.url"),
    ],
)
def test_invalid_values_are_reported(old: str, new: str, field: str) -> None:
    text = DEMO.read_text()
    assert old in text
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace(old, new, 1), "store.yaml")
    problem = info.value.problems[0]
    assert problem.field == field
    assert problem.line is not None
    assert new.split(":")[0].strip() in text.replace(old, new, 1).splitlines()[problem.line - 1]


def test_not_yaml_and_not_mapping() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml:\d+: <root>: not valid YAML"):
        parse_config("site: a\ndevice: [unclosed\nstore: 1\n", "x.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config("- 1\n- 2\n", "x.yaml")


def test_missing_file_exit_1(tmp_path: Path) -> None:
    res = _cli("config", "validate", str(tmp_path / "nope.yaml"))
    assert res.returncode == 1
    assert "cannot read file" in res.stderr


def test_usage_error_exit_2() -> None:
    assert _cli("config", "validate").returncode == 2


def test_committed_schema_matches_code() -> None:
    committed = json.loads(SCHEMA.read_text())
    assert committed == json_schema(), (
        "firmware_configs/schema is stale: run "
        "`shelfedge config schema > firmware_configs/schema/appliance-config.schema.json`"
    )


def test_schema_cli_prints_json() -> None:
    res = _cli("config", "schema")
    assert res.returncode == 0
    assert json.loads(res.stdout)["title"] == "AppConfig"


def test_non_utf8_config_names_the_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.ops.cli import main

    path = tmp_path / "latin1.yaml"
    path.write_bytes(DEMO.read_bytes().replace(b"site: demo-site", b"site: caf\xe9"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    offset = DEMO.read_bytes().index(b"site: demo-site") + len(b"site: caf")
    assert str(info.value) == f"{path}: not UTF-8 text (byte {offset})"
    assert main(["config", "validate", str(path)]) == 1
    assert f"{path}: not UTF-8 text (byte {offset})" in capsys.readouterr().err


def test_duplicate_key_is_an_error_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.ops.cli import main

    lines = DEMO.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("cooldown_s:"))
    lines.insert(at + 1, lines[at].replace("180", "5"))  # the same key again, one line below
    path = tmp_path / "dup.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:{at + 2}: policy: duplicate key 'cooldown_s'"
    assert main(["config", "validate", str(path)]) == 1
    assert "duplicate key 'cooldown_s'" in capsys.readouterr().err
