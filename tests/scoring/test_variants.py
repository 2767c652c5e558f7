"""``genossm score-variants``: log-likelihood ratios of VCF alleles, windows at the records' ends, and bad VCFs."""

import gzip

import numpy as np
import pytest
import torch
from test_score import make_lm, random_bases, reference, write_fasta

from genossm.cli.main import main
from genossm.data.genome import Genome
from genossm.data.tokenizer import encode
from genossm.scoring import LikelihoodScorer
from genossm.scoring.variants import Variant, VcfReader, variant_effects

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture
def genome(tmp_path):
    seqs = {"chr1": random_bases(400, 1), "chr2": random_bases(90, 2)}
    write_fasta(tmp_path / "ref.fa", seqs)
    return Genome(tmp_path / "ref.fa"), seqs


def vcf_line(chrom, pos, ref, alt, vid="."):
    return f"{chrom}\t{pos}\t{vid}\t{ref}\t{alt}\t50\tPASS\t.\n"


def expected_llr(model, seq: str, pos: int, ref: str, alt: str, window: int) -> float:
    """log p(alt window) - log p(ref window), each window scored alone in one forward."""
    start = max(0, pos - 1 - window // 2)
    end = min(len(seq), start + window)
    ref_window = seq[start:end]
    at = pos - 1 - start
    alt_window = ref_window[:at] + alt + ref_window[at + len(ref) :]
    return reference(model, encode(ref_window))[0] - reference(model, encode(alt_window))[0]


def test_llr_of_snvs_and_indels_at_any_position(tmp_path, genome):
    genome, seqs = genome
    s1, s2 = seqs["chr1"], seqs["chr2"]
    snv_alt = "A" if s1[199] != "A" else "C"
    lines = [
        vcf_line("chr1", 200, s1[199], f"{snv_alt},G" if s1[199] != "G" else snv_alt, "rs1"),  # multi-allelic
        vcf_line("chr1", 1, s1[0], "T" if s1[0] != "T" else "A"),  # window clipped at the start
        vcf_line("chr2", 90, s2[89], "C" if s2[89] != "C" else "G"),  # ... and at the end
        vcf_line("chr1", 300, s1[299:302], s1[299]),  # deletion
        vcf_line("chr1", 100, s1[99], s1[99] + "GGT"),  # insertion
        vcf_line("chr2", 10, s2[9].lower(), "<DEL>"),  # symbolic: skipped; lower-case REF matches
    ]
    (tmp_path / "v.vcf").write_text(HEADER + "".join(lines))
    model = make_lm()
    reader = VcfReader(tmp_path / "v.vcf", genome)
    variants = list(reader)
    assert reader.skipped == 1 and len(variants) == len(lines) - 1 + (s1[199] != "G")
    scorer = LikelihoodScorer(model, device="cpu", bfloat16=False, batch_tokens=150)  # two variants a batch
    effects = list(variant_effects(scorer, genome, variants, window=64))
    assert [e.variant for e in effects] == variants
    for effect in effects:
        v = effect.variant
        want = expected_llr(model, seqs[v.chrom], v.pos, v.ref, v.alt, 64)
        assert effect.llr == pytest.approx(want, rel=1e-9, abs=1e-9), v


def test_the_bases_before_a_snv_add_nothing(genome):
    """A causal model: the ratio is the same whatever the window holds before the variant's position... as long as
    it is the same in both windows; so a window ending at the variant scores only the variant's own base."""
    genome, seqs = genome
    model = make_lm()
    s1 = seqs["chr1"]
    alt = "A" if s1[299] != "A" else "C"
    variant = Variant("chr1", 300, ".", s1[299], alt)
    scorer = LikelihoodScorer(model, device="cpu", bfloat16=False)
    (effect,) = variant_effects(scorer, genome, [variant], window=600)  # clipped: [0, 400), variant inside
    ids = torch.from_numpy(encode(s1).astype(np.int64))
    alt_ids = ids.clone()
    alt_ids[299] = int(encode(alt)[0])
    with torch.no_grad():
        lp_ref = torch.log_softmax(model(ids[None, :-1]).logits[0].double(), -1)
        lp_alt = torch.log_softmax(model(alt_ids[None, :-1]).logits[0].double(), -1)
    positions = torch.arange(298, 399)  # predictions of bases 299 ... 399 (0-based): the variant and after
    want = float(lp_alt[positions, alt_ids[1:][positions]].sum() - lp_ref[positions, ids[1:][positions]].sum())
    assert effect.llr == pytest.approx(want, rel=1e-9)


def test_cli_writes_a_tsv_from_a_gzipped_vcf(tmp_path, genome, capsys):
    genome, seqs = genome
    model_dir = tmp_path / "lm"
    make_lm(torch.float32).save_pretrained(model_dir)
    s1 = seqs["chr1"]
    vcf = tmp_path / "v.vcf.gz"
    with gzip.open(vcf, "wt") as handle:
        handle.write(HEADER + vcf_line("chr1", 50, s1[49], "N", "x1") + vcf_line("chr1", 60, s1[59], "*", "x2"))
    out = tmp_path / "out.tsv"
    argv = ["score-variants", str(genome.path), str(vcf), "--model", str(model_dir), "--window", "32"]
    argv += ["--device", "cpu"]  # float32, as the reference below
    assert main([*argv, "--output", str(out), "--no-progress"]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["chrom", "pos", "id", "ref", "alt", "llr"]
    assert rows[1][:5] == ["chr1", "50", "x1", s1[49], "N"] and len(rows) == 2
    assert float(rows[1][5]) == pytest.approx(expected_llr(make_lm(), s1, 50, s1[49], "N", 32), rel=1e-4)
    assert "1 symbolic allele(s) skipped" in capsys.readouterr().err


@pytest.mark.parametrize(
    "line, message",
    [
        ("chr1\t10\t.\tA", "needs CHROM, POS, ID, REF and ALT"),
        ("chrX\t10\t.\tA\tC", "chromosome 'chrX' is not in"),
        ("chr1\tten\t.\tA\tC", "POS must be an integer"),
        ("chr1\t400\t.\tAC\tA", "is not a run of bases inside the record"),
        ("chr1\t10\t.\t{wrong}\tC", "does not match chr1:10"),
    ],
)
def test_bad_vcf_lines_name_the_file_and_line(tmp_path, genome, line, message):
    genome, seqs = genome
    wrong = "C" if seqs["chr1"][9] != "C" else "G"
    (tmp_path / "bad.vcf").write_text(HEADER + line.format(wrong=wrong) + "\n")
    with pytest.raises(ValueError, match="bad.vcf: line 3") as err:
        list(VcfReader(tmp_path / "bad.vcf", genome))
    assert message in str(err.value)
