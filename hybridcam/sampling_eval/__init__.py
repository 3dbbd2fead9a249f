"""`hybridcam sampling-eval`: replay cloud-sampling policies on recorded footage against a reference detector."""
