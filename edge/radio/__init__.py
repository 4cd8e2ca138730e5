"""Radio stage: raw BLE advertisements and app sighting messages become ``Sighting`` events.

Owns frame decoding (token frame, iBeacon, Eddystone, AltBeacon), token tag verification with
the site day keys, and the drop-at-the-boundary rule for anything not opted in. Sources (BLE
scanner, app sightings over MQTT, the simulator) all feed ``Ingest``.
"""

from edge.radio.ingest import AppSighting, Ingest, beacon_key
from edge.radio.keys import DayKeys, token_tag

__all__ = ["AppSighting", "DayKeys", "Ingest", "beacon_key", "token_tag"]
