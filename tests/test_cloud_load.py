"""The cloud load bench on the local cloud path: every site's records processed, none lost, keys spread."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_simulated_sites_go_through_kinesis_and_the_handler_without_loss(tmp_path):
    out = tmp_path / "load.json"
    result = subprocess.run(
        [sys.executable, "bench/cloud_load.py", "--sites", "4", "--shards", "2", "--masters", "1", "--seconds", "5",
         "--send-fraction", "0.1", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    sent = figures["sent_per_site"]
    assert len(sent) == 4 and all(count >= 5 for count in sent.values())
    # every site's frames became one DynamoDB item each and one S3 object: cameras named alike at every site do not collide
    assert figures["dynamodb_items_per_site"] == sent
    assert figures["s3_objects"] == figures["records_sent"] == figures["records_processed"] <= figures["records_delivered"]
    # partition key site/camera: the sites spread over both shards
    shards = figures["per_shard"]
    assert len(shards) == 2 and all(row["records"] > 0 for row in shards)
    assert figures["batch_latency_p50_ms"] > 0 and figures["sites_per_shard"] >= 1
    for words in ("records/s", "MB/s", "Lambda batches", "one shard carries", "one stack at the default"):
        assert words in result.stdout
