"""Cost estimator: prices a camera scenario on every architecture side by side."""
