"""SSD kernels one by one: milliseconds per stage, for the tile table's defaults and a few variants.

The tile table in ``kernels/ssd/tiling.py`` is a guess until measured; this prints, per sequence length, how long
each of the eight kernels takes with the defaults and with each variant (one field of the table changed), so the
table can be set from one run instead of an autotune sweep on every user's first call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from genossm.cli.options import option
from genossm.kernels.common.ssd_state_passing import state_passing_bwd, state_passing_fwd
from genossm.kernels.ssd.chunk_scan import chunk_scan_fwd
from genossm.kernels.ssd.chunk_scan_bwd import chunk_scan_bwd_dc, chunk_scan_bwd_dstarts
from genossm.kernels.ssd.chunk_state import chunk_state_fwd
from genossm.kernels.ssd.dt_bwd import dt_bwd
from genossm.kernels.ssd.dx_db_bwd import dx_db_bwd
from genossm.kernels.ssd.tiling import ssd_tiles, state_dtype, state_passing_tiles

from .report import write_json
from .timing import cuda_median_ms, format_table

DEFAULT_VARIANTS = "num_warps=8;num_stages=3;block_t_inner=16;block_t=32,block_t_bwd=32;block_pn=64"


@dataclass
class SSDStagesOptions:
    """Options of ``genossm bench ssd-stages``."""

    tokens: int = option(1 << 20, "tokens per call; the batch is tokens // seqlen")
    seqlen: str = option("1024,65536,1048576", "sequence lengths, separated by commas")
    dstate: int = option(64, "state size")
    nheads: int = option(4, "heads")
    headdim: int = option(64, "head dimension")
    chunk_size: int = option(256, "chunk size")
    dtype: Literal["bfloat16", "float32"] = option("bfloat16", "dtype of x, B, C and dt")
    variants: str = option(DEFAULT_VARIANTS, "';'-separated changes to the tile table, e.g. 'num_warps=8,num_stages=3'")
    repeats: int = option(20, "timed calls per stage (the median is reported)")
    out: Path | None = option(None, "write ssd_stages.json into this folder")


def parse_variant(text: str) -> dict[str, int]:
    """'num_warps=8,num_stages=3' -> {'num_warps': 8, 'num_stages': 3}."""
    pairs = [item.split("=") for item in text.split(",") if item.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"a variant is 'field=value,...', got {text!r}")
    return {k.strip(): int(v) for k, v in pairs}


def stage_calls(inputs: dict, opts: SSDStagesOptions, change: dict[str, int]) -> dict[str, Callable[[], object]]:
    """The eight kernels as calls on realistic intermediates (computed once here)."""
    x, dt, A, B, C, D, bias = (inputs[k] for k in ("x", "dt", "A", "B", "C", "D", "dt_bias"))
    batch, _, nheads, headdim = x.shape
    fields = {f.name for f in dataclasses.fields(ssd_tiles(1, 1, 1))}
    tiles = dataclasses.replace(ssd_tiles(opts.chunk_size, headdim, opts.dstate, x.dtype), **{
        k: v for k, v in change.items() if k in fields
    })  # fmt: skip
    nchunks = -(-x.shape[1] // opts.chunk_size)
    block_pn, block_chunks = state_passing_tiles(batch * nheads, headdim * opts.dstate, nchunks)
    block_pn, block_chunks = change.get("block_pn", block_pn), change.get("block_chunks", block_chunks)
    unknown = set(change) - fields - {"block_pn", "block_chunks"}
    if unknown:
        raise ValueError(f"unknown tile fields {sorted(unknown)}; known: {sorted(fields)} + block_pn, block_chunks")
    limit, sdtype = (0.0, float("inf")), state_dtype(x.dtype)
    dout = torch.randn_like(x)

    dt_proc, cs, chunk_states = chunk_state_fwd(x, dt, A, B, bias, True, limit, opts.chunk_size, tiles)
    starts, _ = state_passing_fwd(chunk_states, cs, None, sdtype, block_pn, block_chunks)
    dstarts, _ = chunk_scan_bwd_dstarts(dout, None, None, C, cs, nheads, tiles)
    dchunk, _, ddecay = state_passing_bwd(dstarts, cs, starts, None, sdtype, block_pn, block_chunks)
    _, u = chunk_scan_bwd_dc(dout, None, x, B, C, dt_proc, cs, starts, tiles)
    _, _, parts, _ = dx_db_bwd(dout, None, x, B, C, D, dt_proc, cs, dchunk, tiles)
    return {
        "fwd chunk_state": lambda: chunk_state_fwd(x, dt, A, B, bias, True, limit, opts.chunk_size, tiles),
        "fwd state_passing": lambda: state_passing_fwd(chunk_states, cs, None, sdtype, block_pn, block_chunks),
        "fwd chunk_scan": lambda: chunk_scan_fwd(x, B, C, D, None, dt_proc, cs, starts, tiles),
        "bwd dstarts": lambda: chunk_scan_bwd_dstarts(dout, None, None, C, cs, nheads, tiles),
        "bwd state_passing": lambda: state_passing_bwd(dstarts, cs, starts, None, sdtype, block_pn, block_chunks),
        "bwd dc": lambda: chunk_scan_bwd_dc(dout, None, x, B, C, dt_proc, cs, starts, tiles),
        "bwd dx_db": lambda: dx_db_bwd(dout, None, x, B, C, D, dt_proc, cs, dchunk, tiles),
        "bwd dt": lambda: dt_bwd(dt, bias, A, True, limit, dt_proc, cs, parts, u, ddecay, tiles.block_t_bwd),
    }


def run(opts: SSDStagesOptions) -> list[dict[str, object]]:
    """Time every stage for the defaults and each variant; print stage x variant and return the rows."""
    if not torch.cuda.is_available():
        raise ValueError("genossm bench ssd-stages times CUDA kernels: no CUDA GPU is visible")
    from .ssd import SSDBenchOptions, make_inputs

    variants = ["", *(v for v in opts.variants.split(";") if v.strip())]
    rows = []
    for seqlen in tqdm([int(s) for s in opts.seqlen.split(",")], desc="bench ssd-stages", unit="length"):
        batch = max(1, opts.tokens // seqlen)
        shape_opts = SSDBenchOptions(nheads=opts.nheads, headdim=opts.headdim, ngroups=1, dtype=opts.dtype)
        inputs = make_inputs(batch, seqlen, shape_opts, opts.dstate, torch.device("cuda"))
        for variant in variants:
            for stage, call in stage_calls(inputs, opts, parse_variant(variant)).items():
                ms = cuda_median_ms(call, repeats=opts.repeats, warmup=2)
                rows.append(dict(seqlen=seqlen, batch=batch, variant=variant or "default", stage=stage, ms=ms))
        del inputs
        torch.cuda.empty_cache()
    table = []
    for seqlen in dict.fromkeys(r["seqlen"] for r in rows):
        for stage in dict.fromkeys(r["stage"] for r in rows):
            line: dict[str, object] = {"L": seqlen, "stage": stage}
            line.update({r["variant"]: r["ms"] for r in rows if r["seqlen"] == seqlen and r["stage"] == stage})
            table.append(line)
    print(f"SSD stages (ms) on {torch.cuda.get_device_name()}: N={opts.dstate} P={opts.headdim} H={opts.nheads} "
          f"chunk={opts.chunk_size} {opts.dtype}, {opts.tokens} tokens per call")  # fmt: skip
    print(format_table(table))
    if opts.out:
        write_json(rows, opts.out / "ssd_stages.json", device=torch.cuda.get_device_name(), options=vars(opts))
    return rows
