"""One module per DVC stage, each a short `main(params, ...)`: `python -m tallrec.stages.<name> ARGS` is
what dvc.yaml runs, and the `tallrec` command calls the same functions. Both run under the canonical
numerics (tallrec.numerics), put in place here, before any stage module imports torch."""

from __future__ import annotations

import sys
from typing import Callable

from tallrec import numerics

numerics.pin_if_early()


def one_line(error: BaseException) -> str:
    """How bad input ends every stage and command: one line naming the file, the line and the problem."""
    from rich.markup import escape

    return f"[bold red]error:[/] {escape(str(error))}"


def expected_errors() -> tuple[type[BaseException], ...]:
    from tallrec.io import DataError

    return DataError, ValueError, FileNotFoundError, numerics.NumericsError


def run(main: Callable, *types: type) -> None:
    """Entry point of a stage module: parse the arguments by `types`, read params.yaml, run `main`,
    print what it returns; bad input is one line and exit status 1."""
    from rich.console import Console

    console = Console(stderr=True)
    args = sys.argv[1:]
    try:
        numerics.require()  # before tallrec.runtime imports torch
        from tallrec.runtime import quiet_libraries

        quiet_libraries()  # before transformers, peft or bitsandbytes are imported
        from tallrec.config import load_params

        if len(args) != len(types):
            raise ValueError(f"usage: python -m {main.__module__} " + " ".join(t.__name__.upper() for t in types))
        message = main(load_params(), *(t(a) for t, a in zip(types, args)))
    except expected_errors() as e:
        console.print(one_line(e), highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
    if message:
        console.print(message, highlight=False, soft_wrap=True)
