"""`hybridcam k8s render / validate`: node-local frame path, placement, Redis HA, probes, budgets, secrets, GPU."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import pytest
import yaml

from hybridcam.cli import main
from hybridcam.k8s.manifests import FRAMES_REDIS_URL, NODE_LABEL, SECRET_NAME, RenderOptions, group_shm_bytes, render, to_yaml
from hybridcam.k8s.validation import validate_documents, validate_file
from shared.site_config import load_site

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
SITE = DEPLOY / "site.two-servers.yaml"
K8S_VERSION = "1.30.0"


def rendered(**options: object) -> list[dict]:
    site = load_site(SITE)
    return render(site, SITE.read_text(), RenderOptions(**options))  # type: ignore[arg-type]


def by_kind(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


@pytest.mark.parametrize("options", [
    {}, {"profile": "single-node", "redis_password": "p", "dashboard_token": "t"}, {"gpu": True, "cloud": True},
])
def test_rendered_manifests_pass_the_kubernetes_schemas(options):
    assert validate_documents(rendered(**options), K8S_VERSION) == []


def test_validation_catches_a_misspelt_field(tmp_path):
    manifests = rendered()
    pod = by_kind(manifests, "Deployment")["edge-1"]["spec"]["template"]["spec"]
    pod["nodeselector"] = pod.pop("nodeSelector")
    problems = validate_documents(manifests, K8S_VERSION)
    assert len(problems) == 1 and "Deployment edge-1" in problems[0] and "nodeselector" in problems[0]
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    assert "cannot be read as YAML" in validate_file(broken, K8S_VERSION)[0]


def test_each_camera_group_is_one_pod_pinned_to_its_node_with_memory_backed_rings():
    site = load_site(SITE)
    cameras = {camera.id: camera for camera in site.resolved()}
    deployments = by_kind(rendered(), "Deployment")
    for group in site.placement:
        pod = deployments[group.group]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {NODE_LABEL: group.node}
        containers = {c["name"]: c for c in pod["containers"]}
        frames_redis = containers.pop("frames-redis")
        assert "--bind 127.0.0.1" in frames_redis["command"][-1] and '--save ""' in frames_redis["command"][-1]
        assert set(containers) == {"capture", "edge-infer"}
        frames = next(v for v in pod["volumes"] if v["name"] == "frames")
        want_mib = math.ceil(group_shm_bytes([cameras[c] for c in group.cameras], 0) / 2**20)
        assert frames["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{want_mib}Mi"}
        probe_cache = next(v for v in pod["volumes"] if v["name"] == "probe-cache")
        assert probe_cache["hostPath"]["type"] == "DirectoryOrCreate"  # the node's figures: measured once per node
        assert probe_cache["hostPath"]["path"] in pod["initContainers"][0]["command"]
        env = {c: {e["name"]: e.get("value") for e in containers[c]["env"]} for c in containers}
        assert env["capture"]["HYBRIDCAM_CAPTURE_CAMERAS"] == ",".join(group.cameras)
        assert env["edge-infer"]["HYBRIDCAM_EDGE_CAMERAS"] == ",".join(group.cameras)
        # frame references and the work queue on the Pod's own Redis; metadata on the site's
        assert env["capture"]["HYBRIDCAM_FRAMES_REDIS_URL"] == env["edge-infer"]["HYBRIDCAM_FRAMES_REDIS_URL"] == FRAMES_REDIS_URL
        assert env["capture"]["HYBRIDCAM_REDIS_URL"] == "redis://redis:6379/0"
        for name, container in containers.items():
            assert {"name": "frames", "mountPath": "/dev/shm"} in container["volumeMounts"], name
            port = int(env[name]["HYBRIDCAM_HEALTH_PORT"])
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"] == {"path": "/health", "port": port}
            assert container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"]
        capture_limit = int(containers["capture"]["resources"]["limits"]["memory"].removesuffix("Mi"))
        assert capture_limit >= want_mib  # the rings are the Pod's memory: its limit carries them
        assert deployments[group.group]["spec"]["strategy"] == {"type": "Recreate"}
    assert len(by_kind(rendered(), "PodDisruptionBudget")) >= len(site.placement)


def test_cross_node_readers_get_pixels_from_inline_jpegs_and_secrets_come_from_the_secret():
    manifests = rendered(cloud=True)
    deployments = by_kind(manifests, "Deployment")
    capture = next(c for c in deployments["edge-1"]["spec"]["template"]["spec"]["containers"] if c["name"] == "capture")
    assert {"name": "HYBRIDCAM_CAPTURE_INLINE_JPEG", "value": "true"} in capture["env"]
    for name in ("compositor", "dashboard", "sampler"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert "nodeSelector" not in pod and all(v["name"] != "frames" for v in pod["volumes"])
        env = pod["containers"][0]["env"]
        assert {"name": "HYBRIDCAM_REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "redis-password"}}} in env
    token = {"name": "HYBRIDCAM_DASHBOARD_TOKEN", "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "dashboard-token"}}}
    assert token in deployments["dashboard"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "Secret" not in {m["kind"] for m in manifests}  # the operator creates it unless asked
    assert "Secret" in {m["kind"] for m in rendered(redis_password="p", dashboard_token="t")}


def test_cluster_profile_makes_the_site_redis_highly_available_with_sentinel():
    manifests = rendered()
    statefulset = by_kind(manifests, "StatefulSet")["redis-node"]
    assert statefulset["spec"]["replicas"] == 3
    containers = {c["name"] for c in statefulset["spec"]["template"]["spec"]["containers"]}
    assert containers == {"redis", "sentinel"}
    scripts = by_kind(manifests, "ConfigMap")["redis-scripts"]["data"]
    assert "sentinel monitor site redis-node-0.redis-nodes 6379 2" in scripts["sentinel-start.sh"]
    assert "tcp-check expect string role:master" in scripts["haproxy.cfg"]
    assert by_kind(manifests, "Service")["redis"]["spec"]["selector"] == {"app.kubernetes.io/name": "redis"}
    assert by_kind(manifests, "Deployment")["redis"]["spec"]["replicas"] == 2  # HAProxy, in front
    assert by_kind(manifests, "PodDisruptionBudget")["redis-node"]["spec"]["minAvailable"] == 2
    single = rendered(profile="single-node")
    assert "StatefulSet" not in {m["kind"] for m in single}


def test_gpu_variant_asks_for_the_gpu_resource():
    pod = by_kind(rendered(gpu=True), "Deployment")["edge-2"]["spec"]["template"]["spec"]
    edge = next(c for c in pod["containers"] if c["name"] == "edge-infer")
    assert edge["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert edge["image"].startswith("hybridcam-edge-gpu")


def test_committed_manifests_are_what_the_renderer_writes_today():
    for profile in ("cluster", "single-node"):
        committed = (DEPLOY / f"two-servers.{profile}.yaml").read_text()
        assert committed == to_yaml(rendered(profile=profile)), f"re-run hybridcam k8s render for {profile}"
        assert all(d for d in yaml.safe_load_all(committed))


def test_render_and_validate_commands(capsys, tmp_path):
    out = tmp_path / "site.k8s.yaml"
    assert main(["k8s", "render", "--site", str(SITE), "--profile", "single-node", "--with-secrets", "--out", str(out)]) == 0
    secret = next(d for d in yaml.safe_load_all(out.read_text()) if d["kind"] == "Secret")
    assert len(base64.b64decode(secret["data"]["redis-password"])) >= 24
    assert main(["k8s", "validate", str(out)]) == 0
    assert "every manifest is valid" in capsys.readouterr().out


def test_single_node_profile_is_what_podman_kube_play_can_run():
    manifests = rendered(profile="single-node", host_suffix="-pod-0")
    deployments = by_kind(manifests, "Deployment")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert "initContainers" not in pod and all(v["name"] != "frames" for v in pod.get("volumes", [])), name
        for container in pod["containers"]:
            assert "ports" not in container, name
            for probe in ("readinessProbe", "livenessProbe"):
                command = container[probe]["exec"]["command"]
                assert all(" " not in part for part in command), command  # podman re-splits on spaces
    env = {e["name"]: e.get("value") for e in deployments["dashboard"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HYBRIDCAM_REDIS_URL"] == "redis://redis-pod-0:6379/0"
    assert env["HYBRIDCAM_DASHBOARD_PROGRAM_URL"] == "http://compositor-pod-0:8090/stream"
    probe = deployments["edge-1"]["spec"]["template"]["spec"]["containers"][2]["livenessProbe"]["exec"]["command"]
    assert probe[:3] == ["python", "-m", "hybridcam.healthcheck"] and probe[3] == "http://127.0.0.1:8081/health"


def test_the_events_service_runs_beside_the_dashboard_and_shares_its_database_when_the_site_has_rules():
    pod = by_kind(rendered(), "Deployment")["dashboard"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"dashboard", "events"}
    assert {"name": "events", "mountPath": "/data/events"} in containers["events"]["volumeMounts"]
    assert {"name": "events", "mountPath": "/data/events", "readOnly": True} in containers["dashboard"]["volumeMounts"]
    env = {c: {e["name"]: e.get("value") for e in containers[c]["env"]} for c in containers}
    assert env["dashboard"]["HYBRIDCAM_DASHBOARD_EVENTS_DIR"] == env["events"]["HYBRIDCAM_EVENTS_DIR"] == "/data/events"
    assert env["dashboard"]["HYBRIDCAM_HEALTH_PORT"] != env["events"]["HYBRIDCAM_HEALTH_PORT"]  # one network namespace

    site = load_site(SITE)
    without_rules = site.model_copy(update={"events": site.events.model_copy(update={"rules": []})})
    plain = render(without_rules, SITE.read_text(), RenderOptions())
    assert [c["name"] for c in by_kind(plain, "Deployment")["dashboard"]["spec"]["template"]["spec"]["containers"]] == ["dashboard"]
