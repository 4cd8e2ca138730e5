"""Operations: the ``shelfedge`` command line for technicians and the systemd service.

Issue 8 adds ``doctor``, ``status``, ``calibrate`` and config ``diff``/``apply`` here.
"""
