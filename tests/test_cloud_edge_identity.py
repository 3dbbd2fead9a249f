"""The edge's own IAM identity (issue: no deploying user's credentials on the edge) and the stack's alarms.

Read from the CloudFormation template itself: the edge policy grants exactly the calls the edge makes and
nothing else, the role and user that carry it have no other permission, and every alarm notifies the
alert topic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "cloud" / "cfn" / "template.yaml"
EDGE_SERVICES = ("sampler", "results_bridge", "dashboard", "compositor", "events")

# What the issue allows, as (action, resource) with resources written as in the template.
EDGE_GRANTS = {
    ("kinesis:PutRecords", "GetAtt FramesStream.Arn"),
    ("s3:PutObject", "Sub ${FramesBucket.Arn}/${ClaimCheckPrefix}/*"),
    ("s3:PutObject", "Sub ${FramesBucket.Arn}/recordings/*"),  # the compositor's recordings after a run
    ("sqs:ReceiveMessage", "GetAtt ResultsQueue.Arn"),
    ("sqs:DeleteMessage", "GetAtt ResultsQueue.Arn"),
    ("dynamodb:Query", "Sub ${FramesTable.Arn}/index/camera-latest"),
    ("s3:GetObject", "Sub ${FramesBucket.Arn}/frames/*"),  # the cloud-frames panel's pictures, nothing else
    ("s3:GetObject", "Sub ${FramesBucket.Arn}/recordings/*"),  # HeadObject: a resumed recordings upload skips what is there
    ("s3:PutObject", "Sub ${FramesBucket.Arn}/events/*"),  # the events service's clips and snapshots
    ("dynamodb:PutItem", "GetAtt FramesTable.Arn"),  # its event items
    ("sns:Publish", "Ref AlertTopic"),  # its notifications
    ("s3:PutObject", "Sub ${FramesBucket.Arn}/sr-patches/*"),  # the sampler's super-resolution patch sets (docs/uplink.md)
}
# boto3 calls of the edge services -> the IAM action each needs.
CALL_ACTIONS = {
    "put_records": "kinesis:PutRecords", "put_object": "s3:PutObject", "receive_message": "sqs:ReceiveMessage",
    "delete_message": "sqs:DeleteMessage", "delete_message_batch": "sqs:DeleteMessage", "query": "dynamodb:Query",
    '"get_object"': "s3:GetObject", "upload_file": "s3:PutObject", "head_object": "s3:GetObject",
    "put_item": "dynamodb:PutItem", "publish": "sns:Publish",  # publish: also the stream bus's; the events service's SNS call needs it
}


def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))  # type: ignore[no-any-return]


def as_text(value: Any) -> str:
    """A template value (``{"Fn::GetAtt": [...]}``, ``{"Fn::Sub": ...}``, ``{"Ref": ...}``) as one comparable string."""
    if isinstance(value, dict):
        [(function, argument)] = value.items()
        if function == "Fn::GetAtt":
            return "GetAtt " + ".".join(argument)
        return f"{function.removeprefix('Fn::')} {argument}"
    return str(value)


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_edge_policy_grants_exactly_what_the_issue_lists() -> None:
    policy = template()["Resources"]["EdgePolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    grants = set()
    for statement in statements:
        assert statement["Effect"] == "Allow" and set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        if "Condition" in statement:  # only the event items' writes are narrowed, to their own keys
            assert statement["Action"] == "dynamodb:PutItem"
            assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["event#*"]}}
        grants |= {(action, as_text(resource)) for action in listed(statement["Action"])
                   for resource in listed(statement["Resource"])}
    assert grants == EDGE_GRANTS
    assert not any("*" in action for action, _ in grants)


def test_the_edge_role_and_user_carry_only_the_edge_policy() -> None:
    resources = template()["Resources"]
    role, user = resources["EdgeRole"], resources["EdgeUser"]
    for identity in (role, user):
        properties = identity["Properties"]
        assert [as_text(arn) for arn in properties["ManagedPolicyArns"]] == ["Ref EdgePolicy"]
        assert "Policies" not in properties and "PermissionsBoundary" not in properties
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole" and set(trust["Principal"]) == {"AWS"}
    # No other policy in the stack is attached to the edge identities.
    for name, resource in resources.items():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and name != "EdgePolicy":
            attached = listed(resource["Properties"].get("Roles", [])) + listed(resource["Properties"].get("Users", []))
            assert not {as_text(a) for a in attached} & {"Ref EdgeRole", "Ref EdgeUser"}, name


def test_every_aws_call_of_the_edge_is_granted() -> None:
    """The edge services' boto3 calls (called, or handed on as `partial(client.call, ...)`) map onto the policy:
    nothing they need is missing, nothing granted is unused."""
    needed = set()
    for service in EDGE_SERVICES:
        for path in (REPO / "services" / service).rglob("*.py"):
            text = path.read_text()
            needed |= {action for call, action in CALL_ACTIONS.items()
                       if re.search(rf"\.{call}[(,)]" if not call.startswith('"') else re.escape(call), text)}
    assert needed == {action for action, _ in EDGE_GRANTS}


def test_every_alarm_notifies_the_alert_topic() -> None:
    resources = template()["Resources"]
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    watched = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}
    assert {("AWS/Lambda", "Errors"), ("AWS/Lambda", "IteratorAge"),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible")} <= watched
    failed_records = [a for a in alarms.values() if a["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["FailedRecordsQueue", "QueueName"]}]
    assert len(failed_records) == 1
    for alarm in alarms.values():
        assert [as_text(action) for action in alarm["AlarmActions"]] == ["Ref AlertTopic"]
    # CloudWatch can publish to the encrypted topic only with a key whose policy lets it.
    topic_key = resources["AlertTopic"]["Properties"]["KmsMasterKeyId"]
    assert as_text(topic_key) == "Ref AlertTopicKey"
    key_statements = resources["AlertTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and "kms:GenerateDataKey*" in s["Action"]
               for s in key_statements)


def test_the_function_runs_the_package_with_its_dead_letter_queue() -> None:
    function = template()["Resources"]["DetectorFunction"]["Properties"]
    assert function["Handler"] == "detector_lambda.handler.lambda_handler"
    assert as_text(function["Environment"]["Variables"]["FAILED_RECORDS_QUEUE_URL"]) == "Ref FailedRecordsQueue"


def test_the_deployment_docs_list_the_edge_permissions_of_the_template() -> None:
    """docs/deployment.md's table of the edge identity's permissions is the template's, row for row."""
    text = (REPO / "docs" / "deployment.md").read_text()
    rows = re.findall(r"^\| (`[a-z0-9]+:[A-Za-z]+`(?:, `[a-z0-9]+:[A-Za-z]+`)*) \| ([^|]+) \|", text, re.M)
    documented = set()
    names = {"the frames stream": "GetAtt FramesStream.Arn", "the results queue": "GetAtt ResultsQueue.Arn",
             "the alert topic": "Ref AlertTopic", "`FramesTable` (keys `event#...` only)": "GetAtt FramesTable.Arn",
             "`FramesBucket/<ClaimCheckPrefix>/*`": "Sub ${FramesBucket.Arn}/${ClaimCheckPrefix}/*",
             "`FramesTable/index/camera-latest`": "Sub ${FramesTable.Arn}/index/camera-latest"}
    for actions, resource in rows:
        resource = resource.strip()
        written = names.get(resource) or "Sub ${FramesBucket.Arn}/" + resource.strip("`").removeprefix("FramesBucket/")
        documented |= {(action.strip("` "), written) for action in actions.split(",")}
    assert documented == EDGE_GRANTS


def test_the_edge_cannot_reach_face_matches_and_only_the_detector_sends_results() -> None:
    resources = template()["Resources"]
    edge_text = str(resources["EdgePolicy"])
    assert "FaceMatchesTable" not in edge_text and "videos/" not in edge_text
    matches_table = resources["FaceMatchesTable"]["Properties"]
    assert [k["AttributeName"] for k in matches_table["KeySchema"]] == ["person", "sk"]  # removal queries by person
    assert matches_table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is False
    assert "GlobalSecondaryIndexes" not in matches_table
    [statement] = resources["ResultsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "sqs:SendMessage"
    assert as_text(statement["Resource"]) == "GetAtt ResultsQueue.Arn"
    assert statement["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["DetectorRole", "Arn"]}}}
    assert [as_text(q) for q in resources["ResultsQueuePolicy"]["Properties"]["Queues"]] == ["Ref ResultsQueue"]

