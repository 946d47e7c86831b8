"""`python -m bridge` runs the same CLI as the `wattbridge` console script."""

from __future__ import annotations

from bridge.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
