"""The reference central side (``shelfedge fleet``): keys, signed commands, acks.

It never imports device code: only the contract modules (``edge.commands.envelope``).
"""
