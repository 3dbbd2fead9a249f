"""The CloudFormation template: cfn-lint clean, and `hybridcam cloud deploy` into moto creates every resource."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import boto3
import pytest

from cloud.deploy import DeployError, deploy_stack, destroy_stack, stack_outputs
from hybridcam.cli import main as hybridcam_main

TEMPLATE = Path(__file__).resolve().parents[1] / "cloud" / "cfn" / "template.yaml"


def policy_document(document: object) -> dict:
    """AWS returns the document URL-encoded JSON (boto3 decodes it); moto 5 keeps a Python repr of it."""
    if isinstance(document, dict):
        return document
    text = unquote(str(document))
    try:
        return json.loads(text)  # type: ignore[no-any-return]
    except ValueError:
        return ast.literal_eval(text)  # type: ignore[no-any-return]


def test_template_passes_cfn_lint() -> None:
    cfn_lint = shutil.which("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (pip install cfn-lint)")
    completed = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.strip() == ""


def test_deploy_creates_every_resource(aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code = hybridcam_main(["cloud", "deploy", "--stack-name", "hc-stack-test", "--no-dependencies",
                           "--watch-labels", "Person,Car", "--min-confidence", "70", "--alert-email", "ops@example.com",
                           "--batch-size", "25"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    outputs = stack_outputs("hc-stack-test")
    for key in ("StreamName", "FramesBucketName", "FramesTableName", "AlertTopicArn", "ResultsQueueUrl"):
        assert outputs[key] in printed

    kinesis = boto3.client("kinesis").describe_stream_summary(StreamName=outputs["StreamName"])
    assert kinesis["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"

    function = boto3.client("lambda").get_function(FunctionName=outputs["DetectorFunctionName"])["Configuration"]
    assert function["Runtime"] == "python3.12" and function["Handler"] == "detector_lambda.handler.lambda_handler"
    variables = function["Environment"]["Variables"]
    assert variables["FRAMES_BUCKET"] == outputs["FramesBucketName"] and variables["WATCH_LABELS"] == "Person,Car"
    assert str(variables["MIN_CONFIDENCE"]) == "70" and variables["RESULTS_QUEUE_URL"] == outputs["ResultsQueueUrl"]

    [mapping] = boto3.client("lambda").list_event_source_mappings(FunctionName=outputs["DetectorFunctionName"])["EventSourceMappings"]
    assert mapping["EventSourceArn"] == outputs["StreamArn"] and mapping["BatchSize"] == 25
    assert mapping["BisectBatchOnFunctionError"] is True and mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["StartingPosition"] == "TRIM_HORIZON" and mapping["MaximumRetryAttempts"] == 3
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"].endswith(outputs["FailedRecordsQueueUrl"].rsplit("/", 1)[1])

    encryption = boto3.client("s3").get_bucket_encryption(Bucket=outputs["FramesBucketName"])
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    table = boto3.client("dynamodb").describe_table(TableName=outputs["FramesTableName"])["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = {index["IndexName"]: [k["AttributeName"] for k in index["KeySchema"]] for index in table["GlobalSecondaryIndexes"]}
    assert indexes == {"camera-latest": ["camera_id", "capture_ts"], "site-latest": ["site", "capture_ts"],
                       "site-events": ["site", "start_ts"], "site-alerts": ["alert_site", "capture_ts"]}

    assert boto3.client("sns").get_topic_attributes(TopicArn=outputs["AlertTopicArn"])["Attributes"]["TopicArn"]

    sqs = boto3.client("sqs")
    results = sqs.get_queue_attributes(QueueUrl=outputs["ResultsQueueUrl"], AttributeNames=["All"])["Attributes"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=outputs["ResultsDeadLetterQueueUrl"],
                                               AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert f'"deadLetterTargetArn": "{dead_letter_arn}"' in results["RedrivePolicy"].replace(":\"", ": \"")

    role_name = function["Role"].rsplit("/", 1)[1]
    iam = boto3.client("iam")
    assert iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    [policy_name] = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    statements = policy_document(document)["Statement"]
    actions = {action for s in statements for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"kinesis:GetRecords", "s3:PutObject", "dynamodb:PutItem", "sns:Publish", "sqs:SendMessage",
            "rekognition:DetectLabels"} <= actions
    # DetectLabels and DetectFaces act on no resource, so IAM only takes "*" for them.
    assert all(s["Resource"] != "*" for s in statements if s["Action"] not in ("rekognition:DetectLabels", "rekognition:DetectFaces"))
    log_groups = boto3.client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/hc-stack-test-detector")
    assert len(log_groups["logGroups"]) == 1
    assert variables["FAILED_RECORDS_QUEUE_URL"] == outputs["FailedRecordsQueueUrl"]

    # (moto does not create AWS::CloudWatch::Alarm: tests/test_cloud_edge_identity.py reads them from the template.)
    # The edge's own role and its policy (moto does not record the role's managed-policy attachment).
    assert iam.get_role(RoleName=outputs["EdgeRoleArn"].rsplit("/", 1)[1])["Role"]["Arn"] == outputs["EdgeRoleArn"]
    edge_policy = iam.get_policy(PolicyArn=outputs["EdgePolicyArn"])["Policy"]
    version = iam.get_policy_version(PolicyArn=outputs["EdgePolicyArn"], VersionId=edge_policy["DefaultVersionId"])
    edge_statements = policy_document(version["PolicyVersion"]["Document"])["Statement"]
    assert {s["Sid"] for s in edge_statements} == {"SendFrames", "ClaimCheck", "UploadRecordings", "ResumeRecordings", "UploadEvents",
                                                      "RecordEvents", "NotifyEvents", "SuperResolutionPatches", "TakeResults",
                                                      "LatestFrames", "ShowFrames"}
    assert all(s["Resource"].startswith("arn:aws:") for s in edge_statements)

    # A second deploy updates in place and keeps the same resources.
    assert deploy_stack("hc-stack-test", {"WatchLabels": "Person"}, "us-east-1", with_dependencies=False,
                        waiter_delay_s=1, say=lambda _: None)["StreamName"] == outputs["StreamName"]

    boto3.client("s3").put_object(Bucket=outputs["FramesBucketName"], Key="cam1/x.jpg", Body=b"x")
    assert hybridcam_main(["cloud", "destroy", "--stack-name", "hc-stack-test"]) == 0
    with pytest.raises(DeployError, match="not deployed"):
        stack_outputs("hc-stack-test")
    destroy_stack("hc-stack-test", say=lambda _: None)  # removing what is gone is not an error


def test_rollback_names_the_failing_resource_and_reason() -> None:
    from botocore.stub import Stubber

    from cloud.deploy import failure_reason

    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    event = {"StackId": "id", "EventId": "e", "StackName": "s", "Timestamp": "2026-01-01T00:00:00Z"}
    newest_first = [
        {**event, "LogicalResourceId": "s", "ResourceType": "AWS::CloudFormation::Stack",
         "ResourceStatus": "ROLLBACK_COMPLETE"},
        {**event, "LogicalResourceId": "FramesTable", "ResourceType": "AWS::DynamoDB::Table",
         "ResourceStatus": "CREATE_FAILED", "ResourceStatusReason": "Resource creation cancelled"},
        {**event, "LogicalResourceId": "DetectorFunction", "ResourceType": "AWS::Lambda::Function",
         "ResourceStatus": "CREATE_FAILED", "ResourceStatusReason": "Error occurred while GetObject. S3 Error Code: NoSuchKey"},
    ]
    with Stubber(cloudformation) as stubber:
        stubber.add_response("describe_stack_events", {"StackEvents": newest_first}, {"StackName": "s"})
        reason = failure_reason(cloudformation, "s")
    assert reason == "DetectorFunction (AWS::Lambda::Function): Error occurred while GetObject. S3 Error Code: NoSuchKey"
