"""Contract modules shared by the device and the central side (``edge/fleet``).

Nothing here imports device code: only pydantic and the standard library. The central side
may import these modules; the device builds what it publishes so that they validate.
"""
