"""Species classification: fine-tuning, evaluation with a k-mer baseline, and genome-scale inference."""
