"""The tiling heuristic of the Triton selective scan: segments only when the GPU would idle, and then enough."""

import math

import pytest
import torch

from genossm.kernels.selective_scan import tiling


@pytest.fixture
def h100(monkeypatch):
    monkeypatch.setattr(tiling, "_target_programs", lambda device: 132 * tiling.PROGRAMS_PER_SM)


@pytest.mark.parametrize("batch, seqlen", [(1024, 1 << 10), (64, 1 << 14), (16, 1 << 16), (4, 1 << 18), (1, 1 << 20)])
def test_segments_cover_the_sequence_in_whole_chunks(h100, batch, seqlen):
    plan = tiling.plan_scan(batch, 256, 16, seqlen, 1, torch.device("cuda"))
    for segments, block_d in ((plan.fwd_segments, plan.fwd_block_d), (plan.bwd_segments, plan.bwd_block_d)):
        seg_len = tiling.segment_length(seqlen, segments, plan.chunk)
        assert seg_len % plan.chunk == 0 and (segments - 1) * seg_len < seqlen <= segments * seg_len
        programs = batch * math.ceil(256 / block_d)
        if programs * 4 >= 132 * tiling.PROGRAMS_PER_SM:
            assert segments == 1  # enough sequences x channel blocks: no state-only pass
        else:
            assert segments == tiling.MAX_SEGMENTS or programs * segments >= tiling.SEGMENTED_PROGRAMS


def test_forced_choices_win(h100):
    plan = tiling.plan_scan(1, 256, 16, 1 << 20, 1, torch.device("cuda"), tile=8, segments=3, prefetch=True)
    assert (plan.fwd_tile, plan.bwd_tile, plan.fwd_segments, plan.prefetch) == (8, 8, 3, True)
    forced = tiling.plan_scan(1, 256, 16, 1 << 20, 1, torch.device("cuda"), prefetch=False, maxnreg=168)
    assert (forced.prefetch, forced.maxnreg) == (False, 168)


def test_defaults_leave_registers_uncapped(h100):
    plan = tiling.plan_scan(1024, 256, 16, 1024, 1, torch.device("cuda"))
    assert (plan.prefetch, plan.maxnreg) == (tiling.PREFETCH, tiling.MAXNREG)
    cap = {} if tiling.MAXNREG is None else {"maxnreg": tiling.MAXNREG}
    assert tiling.launch_options(plan) == {"enable_fp_fusion": True, **cap}


def test_interpreter_never_segments_unasked():
    plan = tiling.plan_scan(1, 256, 16, 1 << 16, 1, torch.device("cpu"))
    assert plan.fwd_segments == plan.bwd_segments == 1


@pytest.mark.parametrize("batch, expected", [(1024, 32), (64, 16), (16, 32)])
def test_forward_halves_its_channel_block_when_programs_are_few(h100, batch, expected):
    # 64 x 256 channels: 512 programs of 32 channels for 1,056 slots -> 16 channels; 1024 sequences fill the GPU;
    # 16 sequences are cut into segments instead
    assert tiling.plan_scan(batch, 256, 16, 1 << 14, 1, torch.device("cuda")).fwd_block_d == expected


@pytest.mark.parametrize("batch, seqlen", [(1024, 1 << 10), (1, 1 << 20)])
def test_a_cut_sequence_pays_a_second_pass_of_decays(h100, batch, seqlen):
    plan = tiling.plan_scan(batch, 256, 16, seqlen, 1, torch.device("cuda"))
    forward, both = tiling.decays_per_update(plan, False), tiling.decays_per_update(plan, True)
    if plan.fwd_segments == plan.bwd_segments == 1:
        assert (forward, both) == (1, 3)
    else:  # 256 segments at 1 x 1M: every segment but one runs a first pass in each direction
        assert plan.fwd_segments > 1 and forward == 1 + (plan.fwd_segments - 1) / plan.fwd_segments
        assert both == pytest.approx(forward + 3 - 1 / plan.bwd_segments) and 4.9 < both < 5
