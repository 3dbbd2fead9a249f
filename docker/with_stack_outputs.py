"""Run a command with the cloud stack's outputs as its settings (the local-cloud profile).

    python docker/with_stack_outputs.py hybridcam sampler

In the local-cloud profile the stack is deployed into moto by cloud_poller, under generated
resource names, so they cannot be written into .env beforehand. This waits until the stack
answers (saying so once), sets the settings the edge services read from its outputs
(HYBRIDCAM_SAMPLER_STREAM_NAME, ..._CLAIM_CHECK_BUCKET, HYBRIDCAM_BRIDGE_QUEUE_URL,
HYBRIDCAM_DASHBOARD_FRAMES_TABLE/_BUCKET), never overriding one that is already set, and then
replaces itself with the command. Stack name and region: HYBRIDCAM_CLOUD_STACK_NAME and
HYBRIDCAM_CLOUD_REGION, as for `hybridcam cloud`.
"""

from __future__ import annotations

import os
import sys
import time

SETTINGS_FROM_OUTPUTS = {
    "HYBRIDCAM_SAMPLER_STREAM_NAME": "StreamName",
    "HYBRIDCAM_SAMPLER_CLAIM_CHECK_BUCKET": "FramesBucketName",
    "HYBRIDCAM_BRIDGE_QUEUE_URL": "ResultsQueueUrl",
    "HYBRIDCAM_DASHBOARD_FRAMES_TABLE": "FramesTableName",
    "HYBRIDCAM_DASHBOARD_FRAMES_BUCKET": "FramesBucketName",
}


def wait_for_outputs(timeout_s: float) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError

    from cloud.deploy import DeployError, stack_outputs
    from cloud.settings import load_cloud_settings

    settings = load_cloud_settings()
    deadline = time.monotonic() + timeout_s
    said = False
    while True:
        try:
            return stack_outputs(settings.stack_name, settings.region)
        except (DeployError, BotoCoreError) as error:
            if time.monotonic() > deadline:
                raise SystemExit(f"stack outputs: stack {settings.stack_name} did not answer within {timeout_s:.0f} s ({error})") from None
            if not said:
                print(f"stack outputs: waiting for stack {settings.stack_name} ({error})", flush=True)
                said = True
            time.sleep(2)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if any(not os.environ.get(name) for name in SETTINGS_FROM_OUTPUTS):
        outputs = wait_for_outputs(float(os.environ.get("HYBRIDCAM_STACK_OUTPUTS_TIMEOUT_S", "300")))
        for name, output in SETTINGS_FROM_OUTPUTS.items():
            if not os.environ.get(name) and output in outputs:
                os.environ[name] = outputs[output]
        print(f"stack outputs: stream {os.environ.get('HYBRIDCAM_SAMPLER_STREAM_NAME')}, "
              f"results queue {os.environ.get('HYBRIDCAM_BRIDGE_QUEUE_URL')}", flush=True)
    os.execvp(argv[0], argv)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
