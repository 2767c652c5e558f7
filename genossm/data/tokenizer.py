"""Character tokenizer of DNA: HyenaDNA's 12-token vocabulary, vectorised with lookup tables over bytes.

The vocabulary is part of every checkpoint (``model.tokens``); its order is fixed:

====  ============  ===========================================================
 id   token         meaning
====  ============  ===========================================================
  0   ``[CLS]``     start of a sequence to classify
  1   ``[SEP]``     end of a sequence / separator
  2   ``[BOS]``     beginning of sequence
  3   ``[MASK]``    masked position (masked-LM objectives)
  4   ``[PAD]``     padding (never a training target)
  5   ``[RESERVED]`` unused, kept for HyenaDNA compatibility
  6   ``[UNK]``     a character that is not a nucleotide code
  7   ``A``
  8   ``C``
  9   ``G``
 10   ``T``
 11   ``N``         any base: N, the IUPAC ambiguity codes and X
====  ============  ===========================================================

Encoding rules: lowercase (soft-masked) bases are the same tokens as uppercase; the IUPAC ambiguity codes
R Y S W K M B D H V and X map to N; U (uracil) maps to T; every other byte maps to ``[UNK]``, or raises
``ValueError`` naming it and its base number with ``strict=True``.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

TOKENS: tuple[str, ...] = (
    "[CLS]",
    "[SEP]",
    "[BOS]",
    "[MASK]",
    "[PAD]",
    "[RESERVED]",
    "[UNK]",
    "A",
    "C",
    "G",
    "T",
    "N",
)
VOCAB_SIZE = 12
CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = 0, 1, 2, 3, 4, 5, 6
A_ID, C_ID, G_ID, T_ID, N_ID = 7, 8, 9, 10, 11
BASE_IDS = (A_ID, C_ID, G_ID, T_ID)

ANY_BASE_CODES = b"NRYSWKMBDHVX"


def _encode_table() -> np.ndarray:
    table = np.full(256, UNK_ID, dtype=np.uint8)
    for letters, token in ((b"A", A_ID), (b"C", C_ID), (b"G", G_ID), (b"TU", T_ID), (ANY_BASE_CODES, N_ID)):
        for byte in letters:
            table[byte] = table[byte | 0x20] = token  # upper and lower case
    return table


ENCODE_TABLE = _encode_table()
"""``ENCODE_TABLE[byte]`` is the token id of an ASCII byte."""
ENCODE_BYTES = ENCODE_TABLE.tobytes()
"""The same table for ``bytes.translate``, the fastest way to encode bytes."""

DECODE_BYTES = np.frombuffer(b"??????" + b"?ACGTN", dtype=np.uint8)
"""The ASCII letter of each base token (specials are decoded by name)."""

COMPLEMENT = np.arange(VOCAB_SIZE, dtype=np.uint8)
COMPLEMENT[[A_ID, C_ID, G_ID, T_ID]] = [T_ID, G_ID, C_ID, A_ID]
"""``COMPLEMENT[id]``: A<->T, C<->G; N and the special tokens map to themselves."""

_COMPLEMENT_TORCH = torch.from_numpy(COMPLEMENT.astype(np.int64))

Ids = TypeVar("Ids", np.ndarray, torch.Tensor)


def as_bytes(seq: str | bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A uint8 view of a sequence given as text, bytes or a uint8 array of ASCII codes."""
    if isinstance(seq, str):
        try:
            seq = seq.encode("ascii")
        except UnicodeEncodeError as err:
            raise ValueError(f"non-ASCII character {seq[err.start]!r} at base {err.start + 1:,}") from None
    if isinstance(seq, np.ndarray):
        if seq.dtype != np.uint8:
            raise TypeError(f"a sequence array must hold uint8 ASCII codes, not {seq.dtype}")
        return seq
    return np.frombuffer(seq, dtype=np.uint8)


def encode(seq: str | bytes | np.ndarray, strict: bool = False) -> np.ndarray:
    """Token ids (uint8) of a DNA sequence, one per character.

    ``seq`` is text, bytes, or a uint8 array of ASCII codes. With ``strict=True`` a character that is no
    nucleotide code raises ``ValueError`` naming the first one and its base number (:func:`check_known`); otherwise
    it becomes ``[UNK]``.
    """
    if isinstance(seq, str):
        seq = as_bytes(seq)
    if isinstance(seq, np.ndarray):
        ids = ENCODE_TABLE.take(as_bytes(seq))
    else:
        ids = np.frombuffer(bytes(seq).translate(ENCODE_BYTES), dtype=np.uint8)
    if strict:
        check_known(ids, seq)
    return ids


def check_known(ids: np.ndarray, seq: str | bytes | np.ndarray, offset: int = 0) -> None:
    """Raise ``ValueError`` naming the first character of ``seq`` that encoded to ``[UNK]``, by its 1-based base
    number, counting from ``offset`` (where ``seq`` starts in its record)."""
    unknown = np.flatnonzero(ids == UNK_ID)
    if unknown.size:
        pos = int(unknown[0])
        char = chr(int(as_bytes(seq)[pos]))
        others = f"; {unknown.size - 1:,} more after it" if unknown.size > 1 else ""
        raise ValueError(
            f"{char!r} at base {offset + pos + 1:,} is not a nucleotide code (A C G T U, N, X or an IUPAC "
            f"ambiguity code){others}"
        )


def decode(ids: np.ndarray | torch.Tensor | list[int]) -> str:
    """The text of token ids: bases as letters, special tokens by name (``[PAD]``...)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    ids = np.asarray(ids).ravel()
    if ids.size and (ids.min() < 0 or ids.max() >= VOCAB_SIZE):
        bad = ids[(ids < 0) | (ids >= VOCAB_SIZE)][0]
        raise ValueError(f"token id {int(bad)} is outside the vocabulary (0..{VOCAB_SIZE - 1})")
    if ids.size == 0 or ids.min() >= A_ID:
        return DECODE_BYTES[ids].tobytes().decode("ascii")
    return "".join(TOKENS[i] for i in ids.tolist())


def reverse_complement(ids: Ids) -> Ids:
    """Reverse complement of token ids along the last axis (numpy array or torch tensor, any integer dtype)."""
    if isinstance(ids, torch.Tensor):
        table = _COMPLEMENT_TORCH.to(ids.device)
        return table[ids.flip(-1).long()].to(ids.dtype)
    ids = np.asarray(ids)
    return COMPLEMENT[ids[..., ::-1]].astype(ids.dtype, copy=False)
