"""Signed central commands: the envelope contract, verification, replay and version guards,
and dispatch to the device service with exactly one ack per command.

``envelope`` is the contract shared with the central side (``edge.fleet``): the envelope and
ack models, canonical JSON and signing. The rest is device-side.
"""
