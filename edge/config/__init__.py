"""Appliance configuration: pydantic models, YAML loading with file:line errors, schema.

Owns the one config file a technician edits and the JSON Schema exported from it.
"""

from edge.config.loader import ENV_CONFIG, config_hash, json_schema, load_config, parse_config
from edge.config.models import AppConfig, Campaign, Zone

__all__ = [
    "ENV_CONFIG",
    "AppConfig",
    "Campaign",
    "Zone",
    "config_hash",
    "json_schema",
    "load_config",
    "parse_config",
]
