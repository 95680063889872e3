"""sample: the K-shot training draws for every K, seed and domain of params.sample."""

from __future__ import annotations

from tallrec import paths
from tallrec.config import Params


def main(params: Params) -> str:
    from tallrec.sampling import sample

    return f"wrote {len(sample(params))} K-shot draws into {paths.SHOTS}/"


if __name__ == "__main__":
    from tallrec.stages import run

    run(main)
