"""The `tallrec` command's entry point. Its pipeline commands (the stages by hand) run under the
canonical numerics, which must be in place before torch loads (tallrec.numerics); `score` and `rank`
are for people and write no pipeline output, so they keep this CPU's own, faster kernels."""

from __future__ import annotations

import sys

from tallrec import numerics

FREE_COMMANDS = ("score", "rank")  # the CPU's own kernels: their outputs are no DVC output


def command_of(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main() -> None:
    if command_of(sys.argv[1:]) not in FREE_COMMANDS:
        try:
            numerics.pin()
        except numerics.NumericsError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
    from tallrec.cli import app

    app()


if __name__ == "__main__":
    main()
