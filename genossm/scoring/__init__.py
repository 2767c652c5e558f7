"""Scoring DNA with a language model: log-likelihood, bits per base and perplexity of every record of a FASTA
(``likelihood.py``), and the zero-shot effect of VCF variants (``variants.py``)."""

from .likelihood import LikelihoodScorer, SequenceScore, load_language_model

__all__ = ["LikelihoodScorer", "SequenceScore", "load_language_model"]
