"""base_model: model.name -> models/base/<name>/ (a catalog GGUF verified and dequantized once, or a
pointer to a Hugging Face model)."""

from __future__ import annotations

from pathlib import Path

from tallrec.config import Params


def main(params: Params, gguf: Path | None = None) -> str:
    from tallrec.model import build_base

    return f"base model ready in {build_base(params.model.name, params.model.source, gguf=gguf)}/"


if __name__ == "__main__":
    from tallrec.stages import run

    run(main)
