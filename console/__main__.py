"""`jem-console`: the operator console."""

from __future__ import annotations

import sys


def main() -> None:
    print("jem-console is not yet available: it arrives with the operator console issue.", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
