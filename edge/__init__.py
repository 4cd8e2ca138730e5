"""ShelfEdge: privacy-first edge appliance for retail shelves.

The package is laid out by stage of the data flow: ``radio`` (advertisements and app
sightings become ``Sighting`` events), ``presence`` (sightings become zones, visits and
dwell), ``decide`` (dwell becomes offers via policy and the on-device model), ``display``
(the shelf screen), ``bus`` (outbox and MQTT uplink), with ``privacy`` (aggregates, noise,
retention) and ``ops`` (CLI, diagnostics) beside them, ``daemon`` wiring them together and
``sim`` simulating a store. Importing ``edge`` stays cheap: heavy modules load lazily.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
