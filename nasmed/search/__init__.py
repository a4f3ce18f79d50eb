"""Search strategy: the Gumbel sampler and schedules, decoding (and the bilevel loop)."""
