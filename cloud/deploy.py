"""Deploy or remove the hybridcam cloud stack (cloud/cfn/template.yaml) with boto3.

Public API (used by ``hybridcam cloud`` and the end-to-end tests):

- ``deploy_stack(stack_name, params, region) -> dict`` packages the Lambda, uploads the zip to the code
  bucket (``<stack>-code-<account>-<region>``, created when missing; ``code_bucket=`` to choose one),
  creates or updates the stack, waits for it and returns its Outputs (StreamName, StreamArn,
  FramesBucketName, FramesTableName, AlertTopicArn, ResultsQueueUrl, ResultsDeadLetterQueueUrl,
  FailedRecordsQueueUrl, DetectorFunctionName). ``params`` are the template's parameters by name
  (DetectorBackend, SageMakerEndpointName, WatchLabels, MinConfidence, AlertEmail, AlertPhone, ...).
  A failed create/update raises DeployError naming the failing resource and CloudFormation's reason.
- ``destroy_stack(stack_name, region=None)`` empties the frames bucket (CloudFormation cannot delete a
  bucket with objects) and deletes the stack.
- ``stack_outputs(stack_name, region=None) -> dict``.

Every client honours AWS_ENDPOINT_URL, so the same calls deploy into the local moto server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError, WaiterError

from cloud.packaging import build_lambda_zip

TEMPLATE_PATH = Path(__file__).resolve().parent / "cfn" / "template.yaml"
FAILED_STATES = ("CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED")
UNUPDATABLE_STATES = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED")
Say = Callable[[str], None]


class DeployError(RuntimeError):
    """A deployment that failed, with the reason CloudFormation or AWS gave."""


def _session(region: str | None) -> boto3.session.Session:
    return boto3.session.Session(region_name=region)


def default_code_bucket(session: boto3.session.Session, stack_name: str) -> str:
    account = session.client("sts").get_caller_identity()["Account"]
    return f"{stack_name}-code-{account}-{session.region_name}".lower()[:63]


def ensure_code_bucket(s3: Any, bucket: str, region: str, say: Say) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise DeployError(f"code bucket {bucket} is not usable: {error}") from None
    say(f"creating code bucket {bucket}")
    options = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **options)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})


def upload_code(session: boto3.session.Session, zip_path: Path, bucket: str, say: Say) -> str:
    """Upload the zip under a key named by its content, so a code change always updates the function."""
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]
    key = f"lambda/detector-{digest}.zip"
    s3 = session.client("s3")
    ensure_code_bucket(s3, bucket, str(session.region_name), say)
    say(f"uploading {zip_path.name} ({zip_path.stat().st_size / 1e6:.1f} MB) to s3://{bucket}/{key}")
    s3.upload_file(str(zip_path), bucket, key)
    return key


def parameter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _stack_status(cloudformation: Any, stack_name: str) -> str | None:
    try:
        return str(cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"])
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def failure_reason(cloudformation: Any, stack_name: str) -> str:
    """The first resource that failed and why, from the stack's events (oldest first)."""
    try:
        events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
    except ClientError:
        return "no stack events available"
    for event in reversed(events):
        reason = event.get("ResourceStatusReason", "")
        if event.get("ResourceStatus") in FAILED_STATES and "cancelled" not in reason.lower():
            return f"{event['LogicalResourceId']} ({event['ResourceType']}): {reason or 'no reason given'}"
    last = events[0] if events else {}
    return f"stack ended in {last.get('ResourceStatus', 'an unknown state')}: {last.get('ResourceStatusReason', '')}".strip()


def _wait(cloudformation: Any, waiter_name: str, stack_name: str, action: str, delay_s: int) -> None:
    try:
        cloudformation.get_waiter(waiter_name).wait(
            StackName=stack_name, WaiterConfig={"Delay": delay_s, "MaxAttempts": max(1, 3600 // delay_s)})
    except WaiterError:
        raise DeployError(f"{action} of stack {stack_name} failed: {failure_reason(cloudformation, stack_name)}") from None


def stack_outputs(stack_name: str, region: str | None = None) -> dict[str, str]:
    cloudformation = _session(region).client("cloudformation")
    try:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as error:
        raise DeployError(f"stack {stack_name} is not deployed ({error.response['Error'].get('Message', error)})") from None
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def deploy_stack(
    stack_name: str,
    params: dict[str, Any],
    region: str | None = None,
    *,
    code_bucket: str | None = None,
    zip_path: Path | None = None,
    with_dependencies: bool = True,
    waiter_delay_s: int = 10,
    say: Say = print,
) -> dict[str, str]:
    """Package, upload and create-or-update the stack; return its outputs."""
    session = _session(region)
    cloudformation = session.client("cloudformation")
    zip_path = zip_path or build_lambda_zip(with_dependencies=with_dependencies)
    bucket = code_bucket or default_code_bucket(session, stack_name)
    key = upload_code(session, zip_path, bucket, say)
    values = {**{k: v for k, v in params.items() if v is not None}, "CodeBucket": bucket, "CodeKey": key}
    parameters = [{"ParameterKey": name, "ParameterValue": parameter_text(value)} for name, value in sorted(values.items())]
    arguments = {"StackName": stack_name, "TemplateBody": TEMPLATE_PATH.read_text(), "Parameters": parameters,
                 "Capabilities": ["CAPABILITY_IAM"], "Tags": [{"Key": "project", "Value": "hybridcam"}]}
    status = _stack_status(cloudformation, stack_name)
    if status in UNUPDATABLE_STATES:
        say(f"stack {stack_name} is in {status} and cannot be updated; deleting it first")
        cloudformation.delete_stack(StackName=stack_name)
        _wait(cloudformation, "stack_delete_complete", stack_name, "deletion", waiter_delay_s)
        status = None
    try:
        if status is None:
            say(f"creating stack {stack_name} in {session.region_name}")
            cloudformation.create_stack(**arguments)
            _wait(cloudformation, "stack_create_complete", stack_name, "creation", waiter_delay_s)
        else:
            say(f"updating stack {stack_name} ({status}) in {session.region_name}")
            cloudformation.update_stack(**arguments)
            _wait(cloudformation, "stack_update_complete", stack_name, "update", waiter_delay_s)
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        if "No updates are to be performed" in message:
            say(f"stack {stack_name} is already up to date")
        else:
            raise DeployError(f"CloudFormation refused stack {stack_name}: {message}") from None
    return stack_outputs(stack_name, region)


def empty_bucket(s3: Any, bucket: str) -> int:
    removed = 0
    paginator = s3.get_paginator("list_object_versions")
    try:
        for page in paginator.paginate(Bucket=bucket):
            objects = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                       for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for start in range(0, len(objects), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[start:start + 1000], "Quiet": True})
            removed += len(objects)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
    return removed


def destroy_stack(stack_name: str, region: str | None = None, *, waiter_delay_s: int = 10, say: Say = print) -> None:
    """Empty the frames bucket and delete the stack; a stack that does not exist is not an error."""
    session = _session(region)
    cloudformation = session.client("cloudformation")
    if _stack_status(cloudformation, stack_name) is None:
        say(f"stack {stack_name} does not exist; nothing to remove")
        return
    bucket = stack_outputs(stack_name, region).get("FramesBucketName")
    if bucket:
        say(f"emptying frames bucket {bucket}: {empty_bucket(session.client('s3'), bucket)} objects removed")
    say(f"deleting stack {stack_name}")
    cloudformation.delete_stack(StackName=stack_name)
    _wait(cloudformation, "stack_delete_complete", stack_name, "deletion", waiter_delay_s)
