"""Cloud-path sampler: forwards sampled master frames to Kinesis (see docs/sampler.md)."""
