"""Store simulator: a deterministic, faster-than-real-time stand-in for the store's radio.

Owns the simulated world the demo, tests and benchmarks run the daemon against: shoppers who
arrive (Poisson), walk through the configured zones and dwell; opted-in Android phones
advertising the rotating token frame, opted-in iOS phones publishing app sightings of the
reference beacons, ordinary phones and random BLE junk that the ingest gate must drop; RSSI
from a log-distance path-loss model with shadowing and packet loss; and the ground truth
(true zone of each shopper over time) for scoring. ``StoreSimulator.advance`` yields
``edge.events.Advertisement`` and ``AppReport`` items in time order. Only numpy and the
standard library are imported.
"""

from edge.sim.shoppers import Platform, Shopper
from edge.sim.simulator import RPI_RETENTION_S, AppReport, SimStats, StoreSimulator

__all__ = ["RPI_RETENTION_S", "AppReport", "Platform", "Shopper", "SimStats", "StoreSimulator"]
