"""Results bridge: cloud detections from SQS onto the edge detection stream (see docs/sampler.md)."""
