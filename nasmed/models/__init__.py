"""Networks built from a genotype (and baselines)."""
