"""The memory estimator against the H100 measurements, its shape in L and B, the longest L, and --memory auto."""

import csv
import itertools
from pathlib import Path

import pytest

from genossm.classification.finetune import FinetuneOptions
from genossm.classification.finetune import memory_plan as classifier_memory_plan
from genossm.cli.main import main
from genossm.data.datamodules import SpeciesDataModule
from genossm.data.species import SpeciesDataConfig
from genossm.models import MambaConfig
from genossm.presets import model_config, preset_names
from genossm.training import memory_estimate
from genossm.training.memory import MODES, MemoryPlan
from genossm.training.memory_estimate import (
    GIB,
    StepMemory,
    StepShape,
    fit_plan,
    gated_norm_rows,
    ssd_backward_tiles,
    usable_bytes,
)
from genossm.training.pretrain import PretrainOptions, memory_plan

MEASURED = Path(__file__).parent / "data" / "measured_peaks.csv"
H100_BYTES = 81559 * 2**20  # the measuring GPU's memory (nvidia-smi)
SEGMENT = 2**18


def measured_rows() -> list[dict[str, str]]:
    with MEASURED.open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def row_id(row: dict[str, str]) -> str:
    segment = f"-S{row['segment_len']}" if row["segment_len"] else ""
    return f"{row['model']}-L{row['seqlen']}-B{row['batch']}-{row['mode']}{segment}-{row['source']}"


@pytest.fixture(scope="module")
def memories() -> dict[str, StepMemory]:
    return {name: StepMemory(model_config(name)) for name in preset_names("models")}


@pytest.mark.parametrize("row", measured_rows(), ids=row_id)
def test_estimate_matches_the_measured_peak(row, memories):
    segment = int(row["segment_len"] or SEGMENT)
    predicted = memories[row["model"]].estimate(int(row["seqlen"]), int(row["batch"]), row["mode"], segment).peak
    if row["peak_gib"] == "oom":
        assert predicted > H100_BYTES
        return
    measured = float(row["peak_gib"]) * GIB
    assert abs(predicted / measured - 1) < 0.03, f"predicted {predicted / GIB:.2f} GiB"


@pytest.mark.parametrize("name", preset_names("models"))
@pytest.mark.parametrize("mode", MODES)
def test_estimate_grows_with_length_and_batch(name, mode, memories):
    memory = memories[name]
    lengths = [2**k for k in range(0, 25, 2)]
    by_length = [memory.estimate(n, 1, mode, 2**12).peak for n in lengths]
    assert all(a < b for a, b in itertools.pairwise(by_length))
    by_batch = [memory.estimate(2**14, b, mode, 2**12).peak for b in (1, 2, 3, 8, 64)]
    assert all(a < b for a, b in itertools.pairwise(by_batch))


@pytest.mark.parametrize("name", ["mamba1-0.7m", "mamba2-7.5m"])
def test_plain_and_checkpoint_grow_in_proportion_to_the_tokens(name, memories):
    memory = memories[name]
    for mode in ("plain", "checkpoint"):
        short, long = memory.estimate(2**20, 1, mode), memory.estimate(2**21, 1, mode)
        per_tokens = [e.activations + e.working - memory.workspace for e in (short, long)]
        assert per_tokens[1] == pytest.approx(2 * per_tokens[0], rel=1e-4)
        # the same tokens in more, shorter sequences cost the same, or more by what the backward holds per sequence
        # (Mamba-2: the SSD's float32 initial-state gradient)
        many = memory.estimate(2**10, 2**10, mode).peak
        assert many - short.peak == (2**10 - 1) * memory.block.sequence_backward


@pytest.mark.parametrize("name", ["mamba1-0.7m", "mamba1-7m", "mamba2-0.8m"])
def test_segmented_is_flat_in_length_beyond_the_segment(name, memories):
    memory = memories[name]
    held = [memory.estimate(k * SEGMENT, 1, "segmented", SEGMENT) for k in (3, 4, 16, 64, 1024)]
    assert len({e.activations + e.working for e in held}) == 1  # only ids, labels and start states grow
    per_token = (held[-1].peak - held[0].peak) / ((1024 - 3) * SEGMENT)
    assert per_token < 20  # bytes per base of L: the token ids and labels (16) and a share of the start states
    one = memory.estimate(SEGMENT, 1, "segmented", SEGMENT)
    two = memory.estimate(2 * SEGMENT, 1, "segmented", SEGMENT)
    assert one.peak <= two.peak <= held[0].peak
    assert held[0].activations + held[0].working == one.activations + one.working  # segments carry only states
    assert one.peak == memory.estimate(SEGMENT, 1, "plain").peak  # plain over one segment


@pytest.mark.parametrize("name", ["mamba1-0.7m", "mamba2-7.5m"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("gib", [8, 24, 80])
def test_longest_length_is_the_last_that_fits(name, mode, gib, memories):
    memory, gpu = memories[name], gib * GIB
    longest = memory.largest_seqlen(gpu, mode, 2, 2**14)
    assert longest > 0
    assert memory.estimate(longest, 2, mode, 2**14).peak <= usable_bytes(gpu)
    assert memory.estimate(longest + 1, 2, mode, 2**14).peak > usable_bytes(gpu)


def test_longest_length_is_zero_when_nothing_fits(memories):
    assert memories["mamba1-7m"].largest_seqlen(2**20, "segmented") == 0


def test_estimate_rejects_bad_arguments(memories):
    with pytest.raises(ValueError, match="memory mode"):
        memories["mamba1-tiny"].estimate(1024, 1, "auto")
    with pytest.raises(ValueError, match="positive"):
        memories["mamba1-tiny"].estimate(0)
    with pytest.raises(ValueError, match="language models only"):
        StepMemory(model_config("mamba1-tiny"), task="classification").estimate(1024, 1, "segmented")
    with pytest.raises(ValueError, match="dtype"):
        StepMemory(model_config("mamba1-tiny"), dtype="float16")


def test_float32_activations_cost_more_than_bfloat16(memories):
    config = model_config("mamba2-0.8m")
    wide = StepMemory(config, dtype="float32").estimate(2**16, 1, "plain")
    narrow = memories["mamba2-0.8m"].estimate(2**16, 1, "plain")
    # a plain Mamba-2 block keeps the float32 residual stream alone (its input is rebuilt in the backward), so the
    # activations' dtype changes only the working set of the backward
    assert wide.activations == narrow.activations
    assert 1.25 < wide.working / narrow.working < 2.0
    wide, narrow = (StepMemory(config, dtype=d).estimate(2**16, 1, "checkpoint") for d in ("float32", "bfloat16"))
    assert wide.activations > narrow.activations  # checkpointed blocks keep their input in the activations' dtype


def test_mirrored_kernel_constants_match_the_kernels():
    pytest.importorskip("triton")
    import torch

    from genossm.kernels.norm.gated_triton import _launch_shape
    from genossm.kernels.selective_scan import fused_bwd
    from genossm.kernels.selective_scan.tiling import BWD_BLOCK_D, CHUNK, plan_scan
    from genossm.kernels.ssd import triton_scan
    from genossm.kernels.ssd.tiling import ssd_tiles

    assert memory_estimate.SCAN_STATE_SPACING == CHUNK
    assert memory_estimate.SCAN_BWD_PROGRAMS_PER_SM == fused_bwd.PROGRAMS_PER_SM
    assert memory_estimate.SCAN_BWD_BLOCK_D == BWD_BLOCK_D
    assert (memory_estimate.SSD_MAX_HEADDIM, memory_estimate.SSD_MAX_DSTATE) == (
        triton_scan.MAX_HEADDIM,
        triton_scan.MAX_DSTATE,
    )
    for dstate in (1, 4, 16, 24, 64):
        tiling = plan_scan(4, 256, dstate, 4096, 1, torch.device("cpu"))
        assert memory_estimate.scan_backward_tile(dstate) == (tiling.block_n, tiling.bwd_tile)
    for group_size in (16, 64, 100, 256, 512, 1024, 4096):
        assert gated_norm_rows(group_size) == _launch_shape(group_size)[0]
    for chunk, headdim, dstate in [(256, 64, 128), (64, 64, 128), (128, 32, 64), (256, 16, 16), (48, 64, 256)]:
        for dtype, act in ((torch.bfloat16, 2), (torch.float32, 4)):
            tiles = ssd_tiles(chunk, headdim, dstate, dtype)
            assert ssd_backward_tiles(chunk, headdim, dstate, act) == -(-chunk // tiles.block_t_bwd)


# --memory auto


def test_fit_plan_picks_the_fastest_mode_that_fits(memories):
    memory, shape = memories["mamba1-0.7m"], [StepShape(2**20)]
    assert fit_plan(memory, shape, 80 * GIB) == MemoryPlan("plain")
    assert fit_plan(memory, shape, 10 * GIB) == MemoryPlan("plain")
    # segments recompute less than checkpoint mode does: the longest that fits
    assert fit_plan(memory, shape, 9 * GIB) == MemoryPlan("segmented", 3 * 2**18)
    assert fit_plan(memory, shape, 6 * GIB) == MemoryPlan("segmented", 2**19)
    # a plain Mamba-1 block keeps less than its checkpointed inputs: checkpoint mode fits only where plain does
    assert memory.peak(shape, "checkpoint") > memory.peak(shape, "plain")
    with pytest.raises(ValueError, match="will not fit"):
        fit_plan(memory, shape, 9 * GIB, modes=("plain", "checkpoint"))
    gated = StepMemory(MambaConfig(d_model=128, n_layer=6, vocab_size=16, d_intermediate=512))  # with MLPs
    assert fit_plan(gated, shape, 16 * GIB, modes=("plain", "checkpoint")) == MemoryPlan("checkpoint")
    small = fit_plan(memory, shape, 2 * GIB)
    assert small.mode == "segmented" and small.segment_len < 2**18
    assert memory.peak(shape, "segmented", small.segment_len) <= usable_bytes(2 * GIB)
    with pytest.raises(ValueError, match="will not fit"):  # segments as long as the sequence: checkpoint mode
        fit_plan(memory, shape, 8 * GIB, segment_lens=(2**20,))


def test_fit_plan_says_why_nothing_fits(memories):
    with pytest.raises(ValueError) as err:
        fit_plan(memories["mamba1-7m"], [StepShape(2**21)], 2 * GIB, segment_lens=(2**17, 2**16))
    message = str(err.value)
    assert "will not fit" in message and "2.0 GiB" in message and "2,097,152" in message
    for mode in MODES:
        assert f"{mode} " in message
    assert "segments of 65,536" in message and "131,072" not in message


def pretrain_options(**kw) -> PretrainOptions:
    defaults = {"model": "mamba1-0.7m", "seqlen": 2**20, "seqlen_warmup": False, "precision": "bf16-mixed"}
    return PretrainOptions(**{**defaults, **kw})


def test_pretrain_auto_goes_by_length_without_a_gpu(monkeypatch):
    monkeypatch.setattr(memory_estimate, "gpu_memory", lambda: None)
    config = model_config("mamba1-0.7m")
    assert memory_plan(pretrain_options(seqlen=1024), config) == MemoryPlan("plain")
    assert memory_plan(pretrain_options(seqlen=2**20), config) == MemoryPlan("plain")
    assert memory_plan(pretrain_options(seqlen=2**21), config) == MemoryPlan("segmented", 2**18)
    assert memory_plan(pretrain_options(seqlen=2**21, devices=2), config) == MemoryPlan("checkpoint")
    assert memory_plan(pretrain_options(seqlen=2**21, segment_len=4096), config) == MemoryPlan("segmented", 4096)


def test_pretrain_auto_fits_the_gpu(monkeypatch):
    config = model_config("mamba1-0.7m")
    monkeypatch.setattr(memory_estimate, "gpu_memory", lambda: 16 * GIB)
    assert memory_plan(pretrain_options(tokens_per_step=2**20), config) == MemoryPlan("plain")
    monkeypatch.setattr(memory_estimate, "gpu_memory", lambda: 9 * GIB)
    assert memory_plan(pretrain_options(tokens_per_step=2**20), config) == MemoryPlan("segmented", 3 * 2**18)
    monkeypatch.setattr(memory_estimate, "gpu_memory", lambda: 6 * GIB)
    assert memory_plan(pretrain_options(tokens_per_step=2**20), config) == MemoryPlan("segmented", 2**19)
    with pytest.raises(ValueError, match="will not fit"):  # several devices cannot train in segments
        memory_plan(pretrain_options(tokens_per_step=2**20, devices=2), config)


def test_pretrain_auto_covers_the_length_warmup(monkeypatch):
    """Stages shorter than the segment train as checkpoint over a whole micro-batch: they must fit too."""
    monkeypatch.setattr(memory_estimate, "gpu_memory", lambda: 8 * GIB)
    config = model_config("mamba1-0.7m")
    opts = pretrain_options(seqlen=2**22, tokens_per_step=2**22, max_tokens_per_micro_batch=2**20, seqlen_warmup=True)
    with pytest.raises(ValueError, match="will not fit"):  # warm-up stages of 2^20 tokens per micro-batch
        memory_plan(opts, config)
    opts.max_tokens_per_micro_batch = 2**18
    assert memory_plan(opts, config).mode == "segmented"


def test_explicit_modes_are_kept_with_a_warning_when_predicted_not_to_fit(monkeypatch):
    monkeypatch.setattr(memory_estimate, "gpu_memory", lambda: 8 * GIB)
    config = model_config("mamba1-0.7m")
    assert memory_plan(pretrain_options(memory="checkpoint", seqlen=2**16), config) == MemoryPlan("checkpoint")
    with pytest.warns(UserWarning, match="may run out of memory"):
        assert memory_plan(pretrain_options(memory="plain"), config) == MemoryPlan("plain")


def test_pretrain_stops_before_writing_when_nothing_fits(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(memory_estimate, "gpu_memory", lambda: GIB // 2)
    out = tmp_path / "run"
    assert main(["pretrain", "--model", "mamba1-7m", "--seqlen", str(2**20), "--output", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("genossm pretrain: error: a training step at L = 1,048,576") and "\n" not in error
    assert "plain" in error and "checkpoint" in error and "segmented" in error
    assert not out.exists()


def classifier_plan(monkeypatch, gpu_gib, **kw):
    monkeypatch.setattr(memory_estimate, "gpu_memory", lambda: gpu_gib and gpu_gib * GIB)
    defaults = {"model": "mamba1-0.7m", "seqlen": 2**16, "tokens_per_step": 2**20, "precision": "bf16-mixed"}
    opts = FinetuneOptions(**{"max_tokens_per_micro_batch": 2**18, **defaults, **kw})  # a GPU's default
    tokens, micro = opts.step_tokens(opts.seqlen)
    data = SpeciesDataModule(
        SpeciesDataConfig(
            classes="unused", seqlen=opts.seqlen, tokens_per_step=tokens, max_tokens_per_micro_batch=micro
        )
    )
    return classifier_memory_plan(opts, model_config(opts.model), data)


def test_finetune_auto(monkeypatch):
    assert classifier_plan(monkeypatch, None, seqlen=1024) == MemoryPlan("plain")
    assert classifier_plan(monkeypatch, None) == MemoryPlan("plain")
    assert classifier_plan(monkeypatch, None, seqlen=2**21) == MemoryPlan("checkpoint")  # no segments: recompute
    assert classifier_plan(monkeypatch, 80) == MemoryPlan("plain")  # 2^18 tokens per micro-batch: plain fits
    assert classifier_plan(monkeypatch, 2.5) == MemoryPlan("plain")
    with pytest.raises(ValueError, match="plain 2.2 GiB, checkpoint 2.4 GiB"):  # plain Mamba-1 keeps less
        classifier_plan(monkeypatch, 2.25)
    assert classifier_plan(monkeypatch, 0.5, head_only=True) == MemoryPlan("plain")  # a frozen backbone keeps nothing
    with pytest.raises(ValueError, match="will not fit") as err:
        classifier_plan(monkeypatch, 0.5)
    assert "segmented" not in str(err.value)


# genossm memory


def table(output: str) -> dict[str, dict[str, str]]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["mode"])
    keys = lines[start].split()
    rows = [dict(zip(keys, line.split(), strict=True)) for line in lines[start + 1 : start + 4] if line.strip()]
    return {r["mode"]: r for r in rows}


@pytest.mark.parametrize(
    ("gib", "choice"),
    [
        (80, "picks plain"),
        (16, "picks plain"),
        (9, "picks segmented with segments of 786,432"),
        (6, "picks segmented with segments of 524,288"),
        (0.5, "picks segmented with segments of 32,768"),
    ],
)
def test_memory_command_prints_each_mode_and_the_choice(gib, choice, capsys, memories):
    assert main(["memory", "--model", "mamba1-0.7m", "--seqlen", str(2**20), "--gpu-mem", str(gib)]) == 0
    output = capsys.readouterr().out
    rows = table(output)
    assert list(rows) == list(MODES)
    memory = memories["mamba1-0.7m"]
    for mode, row in rows.items():
        peak = memory.estimate(2**20, 1, mode, 2**18)
        assert float(row["peak_GiB"]) == pytest.approx(peak.peak_gib, abs=0.006)
        assert row["fits"] == ("yes" if peak.peak <= usable_bytes(int(gib * GIB)) else "no")
        assert int(row["longest_L"].replace(",", "")) == memory.largest_seqlen(int(gib * GIB), mode, 1, 2**18)
    assert f"--memory auto {choice}" in output
    assert "701,824 parameters" in output


def test_memory_command_says_when_nothing_fits(capsys):
    args = ["memory", "--model", "mamba1-7m", "--seqlen", str(2**21), "--gpu-mem", "1", "--task", "classification"]
    assert main(args) == 0
    output = capsys.readouterr().out
    assert list(table(output)) == ["plain", "checkpoint"]
    assert "--memory auto stops before training: a training step at L = 2,097,152" in output


def test_memory_command_defaults_to_80_gib_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(memory_estimate, "gpu_memory", lambda: None)
    assert main(["memory", "--model", "mamba1-tiny", "--seqlen", "1024"]) == 0
    assert "GPU memory 80.0 GiB (no CUDA device: the default)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "mamba1-tiny", "--seqlen", "0"], "must be positive"),
        (["--model", "no-such-model", "--seqlen", "1024"], "no models preset named 'no-such-model'"),
        (["--seqlen", "1024"], "missing required option(s) ['model']"),
    ],
)
def test_memory_command_bad_input_is_one_line(args, message, capsys):
    assert main(["memory", *args]) == 1
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


def test_a_config_file_works_as_well_as_a_preset(tmp_path, capsys):
    path = tmp_path / "model.json"
    path.write_text('{"d_model": 32, "n_layer": 2, "vocab_size": 12, "ssm_cfg": {"layer": "Mamba2", "headdim": 16}}')
    assert main(["memory", "--model", str(path), "--seqlen", "4096"]) == 0
    assert table(capsys.readouterr().out)["segmented"]["fits"] == "yes"
