"""text_embed: one sentence vector per item of a domain, for the text-aware baselines."""

from __future__ import annotations

from tallrec.config import Params


def main(params: Params, domain: str) -> str:
    from tallrec.baselines.text_embed import text_embed

    return f"wrote {text_embed(domain, params)}"


if __name__ == "__main__":
    from tallrec.stages import run

    run(main, str)
