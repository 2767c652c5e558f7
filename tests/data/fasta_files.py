"""Helpers of the data tests: tiny FASTA files and the sequences they hold (not a conftest: its name must not
shadow tests/conftest.py, which other tests import from)."""

import gzip
import io
from pathlib import Path

import numpy as np
from Bio.bgzf import BgzfWriter

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")
REPO = Path(__file__).resolve().parents[2]


def random_bases(rng: np.random.Generator, n: int, alphabet: bytes = b"ACGTacgt") -> bytes:
    return bytes(rng.choice(np.frombuffer(alphabet, dtype=np.uint8), n))


def fasta_text(records: dict[str, bytes], width: int = 60, newline: bytes = b"\n") -> bytes:
    out = []
    for name, seq in records.items():
        out.append(b">" + name.encode() + b" some description" + newline)
        out += [seq[i : i + width] + newline for i in range(0, len(seq), width)]
    return b"".join(out)


def bgzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    writer = BgzfWriter(fileobj=buffer)
    writer.write(data)
    writer.flush()
    from genossm.data.fasta import BGZF_EOF

    return buffer.getvalue() + BGZF_EOF


def write_fasta(path: Path, records: dict[str, bytes], width: int = 60, newline: bytes = b"\n") -> Path:
    text = fasta_text(records, width, newline)
    if path.name.endswith(".bgz.gz"):
        path = path.with_name(path.name.removesuffix(".bgz.gz") + ".gz")
        path.write_bytes(bgzip(text))
    elif path.suffix == ".gz":
        path.write_bytes(gzip.compress(text))
    else:
        path.write_bytes(text)
    return path


def three_records() -> dict[str, bytes]:
    """Three records: 1000 bases, and 61 and 60 (one line more or exactly one line)."""
    rng = np.random.default_rng(0)
    return {"chr1": random_bases(rng, 1000), "chr2": random_bases(rng, 61), "chr3": random_bases(rng, 60)}
