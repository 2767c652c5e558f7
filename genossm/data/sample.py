"""Where the bundled real sample is (the repository's ``data/`` folder, installed as ``genossm.sample_data``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLES = {
    "human": "human_chr22_excerpt.fa.gz",  # 4.0 Mb of human chr22 (pretraining demos)
    "apes": "apes/manifest.tsv",  # human, chimpanzee, gorilla, orangutan with train/test regions (classification)
}


def sample_path(name: str) -> Path:
    """Path of a bundled sample: 'human' (FASTA) or 'apes' (class manifest)."""
    if name not in SAMPLES:
        raise ValueError(f"no bundled sample named {name!r}; available: {', '.join(SAMPLES)}")
    path = Path(str(resources.files("genossm.sample_data"))) / SAMPLES[name]
    if not path.is_file():
        raise FileNotFoundError(f"the bundled sample {path} is missing; reinstall genossm or pass your own data")
    return path
