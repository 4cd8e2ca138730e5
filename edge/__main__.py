"""Allow ``python -m edge``."""

from edge.ops.cli import main

raise SystemExit(main())
