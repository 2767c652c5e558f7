"""Genome data: tokenizer, FASTA / MAF access, splits and windows, step-indexed datasets (see README.md).

The Lightning DataModules live in :mod:`genossm.data.datamodules` (imported on demand: they pull in Lightning).
"""

from .genome import Genome, RecordChunk, iter_record_chunks, iter_records
from .lm import LMDataConfig
from .maf import maf_to_fasta
from .species import SpeciesDataConfig
from .tokenizer import (
    A_ID,
    BOS_ID,
    C_ID,
    CLS_ID,
    G_ID,
    MASK_ID,
    N_ID,
    PAD_ID,
    SEP_ID,
    T_ID,
    TOKENS,
    UNK_ID,
    VOCAB_SIZE,
    decode,
    encode,
    reverse_complement,
)

__all__ = [
    "A_ID",
    "BOS_ID",
    "CLS_ID",
    "C_ID",
    "G_ID",
    "MASK_ID",
    "N_ID",
    "PAD_ID",
    "SEP_ID",
    "TOKENS",
    "T_ID",
    "UNK_ID",
    "VOCAB_SIZE",
    "Genome",
    "LMDataConfig",
    "RecordChunk",
    "SpeciesDataConfig",
    "decode",
    "encode",
    "iter_record_chunks",
    "iter_records",
    "maf_to_fasta",
    "reverse_complement",
]
