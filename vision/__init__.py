"""Object detectors and the execution-provider choice shared by the edge, the local model server and the evaluators."""
