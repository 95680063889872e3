"""fetch: copy the raw datasets from the mirror (or download them) into data/raw/, sha256-verified."""

from __future__ import annotations

from tallrec import paths
from tallrec.config import Params


def main(params: Params) -> str:
    from tallrec.data import fetch

    return f"fetched and verified {len(fetch(params.data.mirror))} files into {paths.RAW}/"


if __name__ == "__main__":
    from tallrec.stages import run

    run(main)
