"""Kubernetes manifests for a site, built from its site file (`hybridcam k8s render`).

The frame path stays node-local: each placement group is one Pod (a Deployment of one replica,
pinned by the node label ``hybridcam.io/edge-server``) whose capture and edge-infer containers share
a memory-backed /dev/shm sized from the group's rings, so pixels never leave the node raw, and a
Redis of its own (``frames-redis``, on the Pod's loopback) for the frame references and edge-infer's
work queue. What crosses nodes is metadata on the site Redis (frame references, detections, health, alerts, cloud
results) and, for the compositor, dashboard and sampler that may run on other nodes, each frame as
an inline JPEG in its reference (HYBRIDCAM_CAPTURE_INLINE_JPEG; the readers' FrameFetcher decodes it
when the ring is not on their host).

Two profiles:
- ``cluster``: the site Redis is made highly available the way the redis-ha chart does it: three
  Redis replicas with Redis Sentinel beside each (quorum 2) in a StatefulSet, and HAProxy in front
  that sends clients to whichever replica answers ``role:master``, so the services keep their
  plain redis:// URL;
- ``single-node``: one Redis (append-only) instead, for `podman kube play` and one-box trials.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from hybridcam.plan.planner import RING_SECONDS, SHM_SPARE_BYTES
from shared.frame_ring import ring_bytes, ring_slots_for
from shared.site_config import PlacementGroup, ResolvedCamera, SiteConfig

MIB = 1024 * 1024
NODE_LABEL = "hybridcam.io/edge-server"
APP_LABEL = "app.kubernetes.io/part-of"
SECRET_NAME = "hybridcam-secrets"
SITE_CONFIGMAP = "hybridcam-site"
REDIS_IMAGE = "docker.io/library/redis:7.2.5-bookworm"
HAPROXY_IMAGE = "docker.io/library/haproxy:2.9-alpine"
SITE_FILE = "/etc/hybridcam/site.yaml"
PROBE_CACHE = "/var/cache/hybridcam/backend-probe"
FRAMES_REDIS_PORT = 6380
FRAMES_REDIS_URL = f"redis://127.0.0.1:{FRAMES_REDIS_PORT}/0"
Manifest = dict[str, Any]

# Requests and limits per container, from the benchmarks on the 2-core development machine
# (docs/benchmarks.md, docs/kubernetes.md): edge_infer uses both cores when cameras keep it busy.
CAPTURE_CPU_PER_MPIXEL_FPS = 0.012  # cores per (megapixel x frames/s) captured: synthetic 1080p15 ~ 0.37 core
EDGE_CPU_LIMIT = "2"
PROCESS_MEMORY = {"capture": 256, "edge-infer": 768, "sampler": 384, "compositor": 768, "dashboard": 384, "events": 512}


@dataclass(frozen=True)
class RenderOptions:
    profile: str = "cluster"  # cluster | single-node
    image: str = "hybridcam-edge:0.1.0"
    gpu_image: str = "hybridcam-edge-gpu:0.1.0"
    gpu: bool = False
    ring_slots: int = 0  # frames per camera ring; 0 = one second at the camera's rate, as capture sizes them
    cloud: bool = False
    redis_password: str = ""
    dashboard_token: str = ""
    image_pull_policy: str = "IfNotPresent"
    host_suffix: str = ""  # appended to the Service names the services dial (podman kube play: "-pod-0")


def render(site: SiteConfig, site_text: str, options: RenderOptions) -> list[Manifest]:
    cameras = {camera.id: camera for camera in site.resolved()}
    groups = site.placement_groups()
    manifests: list[Manifest] = []
    if options.redis_password or options.dashboard_token:
        manifests.append(secret(options))
    manifests.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(SITE_CONFIGMAP, "site"),
                      "data": {"site.yaml": site_text}})
    manifests += redis_ha() if options.profile == "cluster" else redis_single()
    for group in groups:
        manifests += edge_group(group, [cameras[c] for c in group.cameras], options, cross_node=True)
    manifests += compositor(options) + dashboard(options, with_events=bool(site.events.rules))
    if options.cloud:
        manifests += sampler(options)
    if options.profile == "single-node":
        one_box(manifests, options.host_suffix)
    return manifests


ROOT_OWNED_ON_PODMAN = {"frames", "probe-cache"}


def one_box(manifests: list[Manifest], host_suffix: str) -> None:
    """What the single-node profile changes so that `podman kube play` (4.3) runs it too.

    - podman publishes every declared containerPort on the host, so two Pods with a health port 8080
      collide there: the ports (informational in Kubernetes) are left out;
    - podman turns an httpGet probe into `curl` inside the container, and the image has no curl:
      the probes run `python -m hybridcam.healthcheck URL` instead (not the `hybridcam` command, whose
      imports take seconds on a busy box; and no argument with a space: podman re-splits them);
    - podman ignores Services and resolves a Pod by its own name (NAME-pod-0): ``host_suffix``;
    - podman makes an emptyDir a disk volume owned by root (fsGroup is not applied), and removes a
      finished init container while the Pod starts, racing itself: the edge Pod uses the Pod's own
      /dev/shm instead (shared by its containers, 64 MiB: enough for small trial sites only), and
      edge-infer keeps its back-end probe's figures in its home (measured again after a restart).
    """
    for manifest in manifests:
        if manifest["kind"] != "Deployment":
            continue
        pod = manifest["spec"]["template"]["spec"]
        pod.pop("initContainers", None)
        pod["volumes"] = [volume for volume in pod.get("volumes", []) if volume["name"] not in ROOT_OWNED_ON_PODMAN]
        for container in pod["containers"]:
            container["volumeMounts"] = [mount for mount in container.get("volumeMounts", [])
                                         if mount["name"] not in ROOT_OWNED_ON_PODMAN]
            container["env"] = [variable for variable in container.get("env", [])
                                if variable["name"] != "HYBRIDCAM_EDGE_PROBE_CACHE_DIR"]
            container.pop("ports", None)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                check = container.get(probe, {}).pop("httpGet", None)
                if check is not None:
                    url = f"http://127.0.0.1:{check['port']}{check['path']}"
                    container[probe]["exec"] = {"command": ["python", "-m", "hybridcam.healthcheck", url, "--timeout", "10"]}
                    # an exec probe starts a Python: on a busy box that alone can take tens of seconds
                    container[probe].update({"timeoutSeconds": 60, "periodSeconds": 30})
            if "livenessProbe" in container:
                container["livenessProbe"]["failureThreshold"] = 6
            for variable in container.get("env", []):
                if "value" in variable and host_suffix:
                    variable["value"] = re.sub(r"^(redis|http)://(redis|compositor):", rf"\1://\2{host_suffix}:", variable["value"])


def to_yaml(manifests: list[Manifest]) -> str:
    return "".join("---\n" + yaml.safe_dump(m, sort_keys=False) for m in manifests)


# -- building blocks --------------------------------------------------------------------------------


def meta(name: str, component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "labels": {APP_LABEL: "hybridcam", "app.kubernetes.io/component": component,
                                     "app.kubernetes.io/name": name}, **extra}


def selector(name: str) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/name": name}}


def secret(options: RenderOptions) -> Manifest:
    """Base64 `data`, not `stringData`: podman kube play (4.3) reads only `data`."""
    values = {"redis-password": options.redis_password, "dashboard-token": options.dashboard_token}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta(SECRET_NAME, "secrets"),
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}}


def secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}}


def common_env(health_port: int) -> list[dict[str, Any]]:
    return [{"name": "HYBRIDCAM_REDIS_URL", "value": "redis://redis:6379/0"},
            secret_env("HYBRIDCAM_REDIS_PASSWORD", "redis-password"),
            {"name": "HYBRIDCAM_SITE_FILE", "value": SITE_FILE},
            {"name": "HYBRIDCAM_HEALTH_PORT", "value": str(health_port)}]


def probes(port: int, path: str = "/health", start_s: int = 30) -> dict[str, Any]:
    """Probes on the service's own /health (200 while ok or degraded, 503 when failing)."""
    check = {"httpGet": {"path": path, "port": port}, "timeoutSeconds": 5}
    # initialDelaySeconds on liveness too: runtimes without startup probes (podman kube play) start it at once
    return {"startupProbe": {**check, "periodSeconds": 5, "failureThreshold": max(1, start_s // 5)},
            "readinessProbe": {**check, "periodSeconds": 5, "failureThreshold": 2},
            "livenessProbe": {**check, "initialDelaySeconds": start_s, "periodSeconds": 10, "failureThreshold": 3}}


def resources(cpu_request: float, cpu_limit: str, memory_mib: int) -> dict[str, Any]:
    return {"requests": {"cpu": f"{max(50, round(cpu_request * 1000))}m", "memory": f"{memory_mib}Mi"},
            "limits": {"cpu": cpu_limit, "memory": f"{memory_mib}Mi"}}


def container(name: str, image: str, command: list[str], env: list[dict[str, Any]], port: int,
              res: dict[str, Any], options: RenderOptions, mounts: list[dict[str, Any]], start_s: int = 30) -> dict[str, Any]:
    return {"name": name, "image": image, "imagePullPolicy": options.image_pull_policy, "command": command, "env": env,
            "ports": [{"name": "health", "containerPort": port}], "resources": res, "volumeMounts": mounts,
            **probes(port, start_s=start_s),
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False}}


def site_volume() -> dict[str, Any]:
    return {"name": "site", "configMap": {"name": SITE_CONFIGMAP}}


def site_mount() -> dict[str, Any]:
    return {"name": "site", "mountPath": "/etc/hybridcam", "readOnly": True}


def pdb(name: str, **budget: int) -> Manifest:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(name, "disruption-budget"),
            "spec": {**budget, "selector": selector(name)}}


def service(name: str, port: int, component: str, target: int | None = None) -> Manifest:
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, component),
            "spec": {"selector": {"app.kubernetes.io/name": name},
                     "ports": [{"name": "main", "port": port, "targetPort": target or port}]}}


def deployment(name: str, component: str, pod_spec: dict[str, Any], replicas: int = 1) -> Manifest:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name, component),
            "spec": {"replicas": replicas, "strategy": {"type": "Recreate"} if replicas == 1 else {"type": "RollingUpdate"},
                     "selector": selector(name),
                     "template": {"metadata": {"labels": meta(name, component)["labels"]}, "spec": pod_spec}}}


# -- the edge: one Pod per camera group ---------------------------------------------------------------


def group_shm_bytes(cameras: list[ResolvedCamera], slots: int) -> int:
    """Every ring twice (a restarted capture may replace one while readers hold the old) plus spare;
    ``slots`` per ring, or (0) one second at each camera's rate, as capture sizes them."""
    return 2 * sum(ring_bytes(c.width, c.height, slots or ring_slots_for(c.fps, RING_SECONDS)) for c in cameras) + SHM_SPARE_BYTES


def edge_group(group: PlacementGroup, cameras: list[ResolvedCamera], options: RenderOptions, cross_node: bool) -> list[Manifest]:
    name = f"edge-{group.group}" if not group.group.startswith("edge") else group.group
    shm_mib = math.ceil(group_shm_bytes(cameras, options.ring_slots) / MIB)
    ids = ",".join(group.cameras)
    capture_cpu = sum(c.width * c.height / 1e6 * c.fps for c in cameras) * CAPTURE_CPU_PER_MPIXEL_FPS
    mounts = [site_mount(), {"name": "frames", "mountPath": "/dev/shm"}]
    frames_env = {"name": "HYBRIDCAM_FRAMES_REDIS_URL", "value": FRAMES_REDIS_URL}
    capture_env = common_env(8080) + [frames_env, {"name": "HYBRIDCAM_CAPTURE_CAMERAS", "value": ids},
                                      {"name": "HYBRIDCAM_CAPTURE_RING_SLOTS", "value": str(options.ring_slots)},
                                      {"name": "HYBRIDCAM_CAPTURE_RING_S", "value": f"{RING_SECONDS:g}"},
                                      {"name": "HYBRIDCAM_CAPTURE_INLINE_JPEG", "value": "true" if cross_node else "false"}]
    # the back-end probe's figures (tens of seconds to measure) are the node's: kept on it, so only the first
    # edge Pod a node ever runs measures, not every restart or rollout
    edge_env = common_env(8081) + [frames_env, {"name": "HYBRIDCAM_EDGE_CAMERAS", "value": ids},
                                   {"name": "HYBRIDCAM_EDGE_PROBE_CACHE_DIR", "value": PROBE_CACHE}]
    edge_resources = resources(1.0, EDGE_CPU_LIMIT, PROCESS_MEMORY["edge-infer"])
    image = options.image
    if options.gpu:
        image = options.gpu_image
        edge_resources["limits"]["nvidia.com/gpu"] = 1
        edge_env.append({"name": "HYBRIDCAM_EDGE_TRT_CACHE_DIR", "value": "/var/cache/hybridcam/tensorrt"})
    containers = [
        frames_redis(),
        # the rings live in the Pod's memory volume: the capture container's limit carries them
        container("capture", options.image, ["hybridcam", "capture"], capture_env, 8080,
                  resources(capture_cpu, "2", PROCESS_MEMORY["capture"] + shm_mib), options, mounts),
        container("edge-infer", image, ["hybridcam", "edge-infer"], edge_env, 8081, edge_resources, options,
                  mounts + [{"name": "probe-cache", "mountPath": PROBE_CACHE}]
                  + ([{"name": "tensorrt-cache", "mountPath": "/var/cache/hybridcam/tensorrt"}] if options.gpu else []),
                  start_s=600 if options.gpu else 300),
    ]
    volumes = [site_volume(), {"name": "frames", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_mib}Mi"}},
               {"name": "probe-cache", "hostPath": {"path": PROBE_CACHE, "type": "DirectoryOrCreate"}}]
    if options.gpu:
        volumes.append({"name": "tensorrt-cache", "hostPath": {"path": "/var/cache/hybridcam/tensorrt", "type": "DirectoryOrCreate"}})
    # The memory volume is created root-owned where fsGroup is not applied (podman kube play), and a hostPath
    # directory root-owned by the kubelet: the services run as uid 10001 and write in both, so both are
    # opened up first, as /dev/shm is.
    open_shm = {"name": "shm-permissions", "image": options.image, "imagePullPolicy": options.image_pull_policy,
                "command": ["chmod", "1777", "/dev/shm", PROBE_CACHE], "securityContext": {"runAsUser": 0},
                "resources": resources(0.05, "100m", 32),
                "volumeMounts": [{"name": "frames", "mountPath": "/dev/shm"}, {"name": "probe-cache", "mountPath": PROBE_CACHE}]}
    pod = {"nodeSelector": {NODE_LABEL: group.node}, "terminationGracePeriodSeconds": 15,
           "securityContext": {"fsGroup": 10001}, "initContainers": [open_shm], "containers": containers, "volumes": volumes}
    edge = deployment(name, "edge", pod)
    return [edge, pdb(name, minAvailable=1)]


def frames_redis() -> dict[str, Any]:
    """The server's own Redis: frame references (no pixels) and edge-infer's consumer group, on loopback only;
    nothing in it outlives the frames it points at, so it keeps nothing on disk."""
    command = (f'exec redis-server --port {FRAMES_REDIS_PORT} --bind 127.0.0.1 --requirepass "$REDIS_PASSWORD" '
               '--save "" --appendonly no --maxmemory 96mb --maxmemory-policy noeviction')
    ping = {"exec": {"command": ["redis-cli", "-p", str(FRAMES_REDIS_PORT), "ping"]}, "timeoutSeconds": 5}
    return {"name": "frames-redis", "image": REDIS_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command],
            "env": [secret_env("REDIS_PASSWORD", "redis-password"), secret_env("REDISCLI_AUTH", "redis-password")],
            "resources": resources(0.05, "500m", 128),
            "readinessProbe": {**ping, "periodSeconds": 5}, "livenessProbe": {**ping, "periodSeconds": 10, "failureThreshold": 3}}


# -- site-level services ------------------------------------------------------------------------------


def compositor(options: RenderOptions) -> list[Manifest]:
    env = common_env(8080) + [{"name": "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR", "value": "/data/program"}]
    main = container("compositor", options.image, ["hybridcam", "compositor", "--preview-port", "8090", "--h264-port", "8091"],
                     env, 8080, resources(0.5, "2", PROCESS_MEMORY["compositor"]), options,
                     [site_mount(), {"name": "program", "mountPath": "/data/program"}])
    main["ports"] += [{"name": "preview", "containerPort": 8090}, {"name": "h264", "containerPort": 8091}]
    pod = {"containers": [main], "securityContext": {"fsGroup": 10001},
           "volumes": [site_volume(), {"name": "program", "emptyDir": {"sizeLimit": "2Gi"}}]}
    svc = service("compositor", 8090, "program")
    svc["spec"]["ports"].append({"name": "h264", "port": 8091, "targetPort": 8091})
    return [deployment("compositor", "program", pod), svc]


def dashboard(options: RenderOptions, with_events: bool) -> list[Manifest]:
    """The page, and beside it in the same Pod the events service when the site has rules: the review page
    reads the events' database and clips from the volume they share (frames come as inline JPEGs)."""
    events_mount = {"name": "events", "mountPath": "/data/events"}
    env = common_env(8088) + [secret_env("HYBRIDCAM_DASHBOARD_TOKEN", "dashboard-token"),
                              {"name": "HYBRIDCAM_DASHBOARD_PROGRAM_URL", "value": "http://compositor:8090/stream"},
                              {"name": "HYBRIDCAM_DASHBOARD_PROGRAM_H264_URL", "value": "http://compositor:8091/stream"},
                              {"name": "HYBRIDCAM_DASHBOARD_EVENTS_DIR", "value": "/data/events"}]
    main = container("dashboard", options.image, ["hybridcam", "dashboard", "--host", "0.0.0.0", "--port", "8088"],
                     env, 8088, resources(0.2, "1", PROCESS_MEMORY["dashboard"]), options,
                     [site_mount(), {**events_mount, "readOnly": True}] if with_events else [site_mount()])
    pod: dict[str, Any] = {"containers": [main], "volumes": [site_volume()]}
    if with_events:
        events_env = common_env(8089) + [{"name": "HYBRIDCAM_EVENTS_DIR", "value": "/data/events"}]
        pod["containers"].append(container("events", options.image, ["hybridcam", "events"], events_env, 8089,
                                           resources(0.2, "1", PROCESS_MEMORY["events"]), options, [site_mount(), events_mount]))
        pod["securityContext"] = {"fsGroup": 10001}
        pod["volumes"].append({"name": "events", "emptyDir": {"sizeLimit": "4Gi"}})
    return [deployment("dashboard", "dashboard", pod), service("dashboard", 8088, "dashboard")]


def sampler(options: RenderOptions) -> list[Manifest]:
    env = common_env(8080) + [{"name": "HYBRIDCAM_SAMPLER_SPOOL_DIR", "value": "/data/spool"}]
    main = container("sampler", options.image, ["hybridcam", "sampler"], env, 8080,
                     resources(0.3, "1", PROCESS_MEMORY["sampler"]), options,
                     [site_mount(), {"name": "spool", "mountPath": "/data/spool"}])
    pod = {"containers": [main], "securityContext": {"fsGroup": 10001},
           "volumes": [site_volume(), {"name": "spool", "emptyDir": {"sizeLimit": "4Gi"}}]}
    return [deployment("sampler", "cloud-path", pod)]


# -- the site Redis -------------------------------------------------------------------------------------

REDIS_ARGS = ["--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"]


def redis_single() -> list[Manifest]:
    main = {"name": "redis", "image": REDIS_IMAGE, "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", 'exec redis-server --requirepass "$REDIS_PASSWORD" ' + " ".join(REDIS_ARGS)],
            "env": [secret_env("REDIS_PASSWORD", "redis-password"), secret_env("REDISCLI_AUTH", "redis-password")],
            "ports": [{"name": "redis", "containerPort": 6379}],
            "resources": resources(0.2, "1", 768),
            "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5, "timeoutSeconds": 5},
            "livenessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 10, "timeoutSeconds": 5,
                              "failureThreshold": 3},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    pod = {"containers": [main], "volumes": [{"name": "data", "emptyDir": {}}]}
    return [deployment("redis", "site-bus", pod), service("redis", 6379, "site-bus")]


REDIS_START = """set -e
ordinal=${HOSTNAME##*-}
peer=redis-node-0.redis-nodes
if [ "$ordinal" = 0 ]; then exec redis-server --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" ARGS; fi
exec redis-server --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" --replicaof "$peer" 6379 ARGS
""".replace("ARGS", " ".join(REDIS_ARGS))

SENTINEL_START = """set -e
cat > /tmp/sentinel.conf <<EOF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${HOSTNAME}.redis-nodes
sentinel monitor site redis-node-0.redis-nodes 6379 2
sentinel auth-pass site ${REDIS_PASSWORD}
sentinel down-after-milliseconds site 5000
sentinel failover-timeout site 30000
EOF
exec redis-sentinel /tmp/sentinel.conf
"""

HAPROXY_CFG = """defaults
  mode tcp
  timeout connect 4s
  timeout client 330s
  timeout server 330s
resolvers k8s
  parse-resolv-conf
  hold valid 5s
backend site_master
  option tcp-check
  tcp-check connect
  tcp-check send "AUTH ${REDIS_PASSWORD}"\\r\\n
  tcp-check expect string +OK
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  tcp-check send info\\ replication\\r\\n
  tcp-check expect string role:master
  tcp-check send QUIT\\r\\n
  server r0 redis-node-0.redis-nodes:6379 check inter 1s resolvers k8s init-addr none
  server r1 redis-node-1.redis-nodes:6379 check inter 1s resolvers k8s init-addr none
  server r2 redis-node-2.redis-nodes:6379 check inter 1s resolvers k8s init-addr none
frontend redis
  bind :6379
  default_backend site_master
frontend health
  mode http
  bind :8404
  monitor-uri /healthz
"""


def redis_ha() -> list[Manifest]:
    """Three Redis replicas with Sentinel (quorum 2) and HAProxy routing to the master (redis-ha chart's pattern)."""
    scripts = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("redis-scripts", "site-bus"),
               "data": {"redis-start.sh": REDIS_START, "sentinel-start.sh": SENTINEL_START, "haproxy.cfg": HAPROXY_CFG}}
    auth = [secret_env("REDIS_PASSWORD", "redis-password"), secret_env("REDISCLI_AUTH", "redis-password")]
    scripts_mount = {"name": "scripts", "mountPath": "/scripts", "readOnly": True}
    redis = {"name": "redis", "image": REDIS_IMAGE, "command": ["sh", "/scripts/redis-start.sh"], "env": auth,
             "ports": [{"name": "redis", "containerPort": 6379}], "resources": resources(0.2, "1", 768),
             "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5},
             "livenessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 10, "failureThreshold": 3},
             "volumeMounts": [scripts_mount, {"name": "data", "mountPath": "/data"}]}
    sentinel = {"name": "sentinel", "image": REDIS_IMAGE, "command": ["sh", "/scripts/sentinel-start.sh"], "env": auth,
                "ports": [{"name": "sentinel", "containerPort": 26379}], "resources": resources(0.05, "200m", 64),
                "readinessProbe": {"exec": {"command": ["redis-cli", "-p", "26379", "ping"]}, "periodSeconds": 5},
                "volumeMounts": [scripts_mount]}
    statefulset = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("redis-node", "site-bus"),
                   "spec": {"serviceName": "redis-nodes", "replicas": 3, "selector": selector("redis-node"),
                            "template": {"metadata": {"labels": meta("redis-node", "site-bus")["labels"]},
                                         "spec": {"affinity": anti_affinity("redis-node"), "containers": [redis, sentinel],
                                                  "volumes": [{"name": "scripts", "configMap": {"name": "redis-scripts"}}]}},
                            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}]}}
    headless = {"apiVersion": "v1", "kind": "Service", "metadata": meta("redis-nodes", "site-bus"),
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                         "selector": {"app.kubernetes.io/name": "redis-node"},
                         "ports": [{"name": "redis", "port": 6379}, {"name": "sentinel", "port": 26379}]}}
    haproxy = {"name": "haproxy", "image": HAPROXY_IMAGE, "env": [secret_env("REDIS_PASSWORD", "redis-password")],
               "ports": [{"name": "redis", "containerPort": 6379}, {"name": "health", "containerPort": 8404}],
               "resources": resources(0.05, "500m", 64),
               "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8404}, "periodSeconds": 5},
               "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8404}, "periodSeconds": 10},
               "volumeMounts": [{"name": "config", "mountPath": "/usr/local/etc/haproxy", "readOnly": True}]}
    proxy_pod = {"affinity": anti_affinity("redis"), "containers": [haproxy], "volumes": [
        {"name": "config", "configMap": {"name": "redis-scripts", "items": [{"key": "haproxy.cfg", "path": "haproxy.cfg"}]}}]}
    return [scripts, statefulset, headless, pdb("redis-node", minAvailable=2),
            deployment("redis", "site-bus", proxy_pod, replicas=2), service("redis", 6379, "site-bus"), pdb("redis", minAvailable=1)]


def anti_affinity(name: str) -> dict[str, Any]:
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
        "topologyKey": "kubernetes.io/hostname", "labelSelector": selector(name)}}]}}
