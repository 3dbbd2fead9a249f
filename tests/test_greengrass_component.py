"""The fleet's Greengrass v2 component, recipe and staged deployment, checked statically (no AWS account here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "deploy" / "greengrass"
RECIPE = FOLDER / "com.hybridcam.EdgeStack.recipe.yaml"
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


@pytest.fixture(scope="module")
def recipe() -> dict:
    return yaml.safe_load(RECIPE.read_text())


def test_recipe_has_the_fields_greengrass_requires(recipe):
    assert recipe["RecipeFormatVersion"] == "2020-01-25"
    assert re.fullmatch(r"[A-Za-z0-9.\-_]{1,128}", recipe["ComponentName"])
    assert SEMVER.match(recipe["ComponentVersion"])
    assert recipe["ComponentVersion"] == tomllib_version()
    for manifest in recipe["Manifests"]:
        assert manifest["Platform"]["os"] == "linux"
        assert {"Install", "Run", "Shutdown"} <= set(manifest["Lifecycle"])
        for artifact in manifest["Artifacts"]:
            assert artifact["Uri"].startswith(("s3://", "docker:"))


def test_credentials_come_from_the_token_exchange_service(recipe):
    dependency = recipe["ComponentDependencies"]["aws.greengrass.TokenExchangeService"]
    assert dependency["DependencyType"] == "HARD"
    text = RECIPE.read_text() + (FOLDER / "docker-compose.greengrass.yml").read_text()
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in text and "AWS_CONTAINER_AUTHORIZATION_TOKEN" in text
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key", text, re.IGNORECASE)


def test_every_configuration_placeholder_is_defined_and_every_file_exists(recipe):
    defined = set(recipe["ComponentConfiguration"]["DefaultConfiguration"])
    scripts = " ".join(step["Script"] for m in recipe["Manifests"] for step in m["Lifecycle"].values())
    used = set(re.findall(r"\{configuration:/(\w+)\}", scripts))
    assert used and used <= defined
    for compose_file in re.findall(r"-f (\S+\.yml)", scripts):
        assert (REPO / compose_file).exists(), compose_file


def test_rollout_to_thing_groups_is_staged_and_rolls_back():
    deployment = json.loads((FOLDER / "deployment.json").read_text())
    assert re.fullmatch(r"arn:aws:iot:[^:]+:[^:]+:thinggroup/[\w-]+", deployment["targetArn"])
    recipe_doc = yaml.safe_load(RECIPE.read_text())
    assert deployment["components"][recipe_doc["ComponentName"]]["componentVersion"] == recipe_doc["ComponentVersion"]
    assert deployment["deploymentPolicies"]["failureHandlingPolicy"] == "ROLLBACK"
    rollout = deployment["iotJobConfiguration"]["jobExecutionsRolloutConfig"]
    assert rollout["exponentialRate"]["baseRatePerMinute"] < rollout["maximumPerMinute"]
    abort = deployment["iotJobConfiguration"]["abortConfig"]["criteriaList"][0]
    assert abort["action"] == "CANCEL" and 0 < abort["thresholdPercentage"] <= 25


def test_compose_override_merges_with_the_stack():
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (Debian package docker-compose; make system-packages)")
    env = {**os.environ, "STACK_ENV_FILE": str(REPO / "config" / "example.env"),
           "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://localhost:8090/2016-11-01/credentialprovider/",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": "token"}
    result = subprocess.run(["docker-compose", "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml"),
                             "-f", str(FOLDER / "docker-compose.greengrass.yml"), "--profile", "cloud", "config"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("sampler", "results_bridge"):
        assert services[name]["network_mode"] == "host"
        assert services[name]["environment"]["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://localhost")
        assert services[name]["environment"]["HYBRIDCAM_REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert any(str(port).startswith("127.0.0.1:6379") or (isinstance(port, dict) and port.get("host_ip") == "127.0.0.1")
               for port in services["redis"]["ports"])


def tomllib_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
