"""The stack's face watch-list: a Rekognition collection, and a Lambda role that may search it and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "cloud" / "cfn" / "template.yaml"
FACE_ACTIONS = {"rekognition:DetectFaces", "rekognition:SearchFacesByImage"}
# Actions that change a collection belong to the operator's `hybridcam faces` command, never the Lambda.
OPERATOR_ONLY = {"rekognition:IndexFaces", "rekognition:DeleteFaces", "rekognition:CreateCollection",
                 "rekognition:DeleteCollection", "rekognition:ListFaces", "rekognition:SearchFaces"}


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !GetAtt ...) read as {"Fn::X": value} maps."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CloudFormationLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)  # noqa: S506 - SafeLoader subclass


def detector_statements() -> list[dict[str, Any]]:
    role = template()["Resources"]["DetectorRole"]["Properties"]
    return [statement for policy in role["Policies"] for statement in policy["PolicyDocument"]["Statement"]]


def actions_of(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def test_the_stack_creates_the_watch_list_collection_and_names_it_in_outputs() -> None:
    resources = template()["Resources"]
    [collection] = [r for r in resources.values() if r["Type"] == "AWS::Rekognition::Collection"]
    collection_id = collection["Properties"]["CollectionId"]
    assert collection_id == {"Fn::Sub": "${AWS::StackName}-faces"}
    assert template()["Outputs"]["FaceCollectionId"]["Value"] == collection_id
    variables = resources["DetectorFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["FACE_COLLECTION"] == collection_id
    assert variables["FACE_SEARCH"] == {"Ref": "FaceSearch"}
    assert template()["Parameters"]["FaceSearch"]["Default"] == "disabled"  # off until the operator turns it on


def test_the_lambda_may_search_only_this_collection() -> None:
    statements = detector_statements()
    search = [s for s in statements if "rekognition:SearchFacesByImage" in actions_of(s)]
    assert len(search) == 1 and actions_of(search[0]) == {"rekognition:SearchFacesByImage"}
    assert search[0]["Effect"] == "Allow"
    assert search[0]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:rekognition:${AWS::Region}:${AWS::AccountId}:collection/${AWS::StackName}-faces"}
    detect = [s for s in statements if "rekognition:DetectFaces" in actions_of(s)]
    # DetectFaces reads only the image it is given: IAM has no resource to scope it to.
    assert len(detect) == 1 and actions_of(detect[0]) == {"rekognition:DetectFaces"} and detect[0]["Resource"] == "*"


def test_the_lambda_cannot_change_or_list_any_collection() -> None:
    granted = {action for statement in detector_statements() for action in actions_of(statement)}
    assert not granted & OPERATOR_ONLY
    assert not any(action in ("rekognition:*", "*") for action in granted)
    rekognition = {action for action in granted if action.startswith("rekognition:")}
    assert rekognition == FACE_ACTIONS | {"rekognition:DetectLabels"}
