"""The `hybridcam cost` command: tables, charts and the AWS price-list refresh (the cost model itself is in cost_model/)."""
