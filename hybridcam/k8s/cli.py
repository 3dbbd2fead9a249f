"""Kubernetes manifests for a site: `render` them from the site file, `validate` them offline.

  hybridcam k8s render --site config/site.yaml > site.k8s.yaml     # cluster profile: Redis Sentinel + HAProxy
  hybridcam k8s render --site config/site.yaml --profile single-node --with-secrets --out site.k8s.yaml
  hybridcam k8s validate site.k8s.yaml                              # against the Kubernetes schemas, no cluster

Each placement group of the site file (`placement:`, written by `hybridcam plan --write-site`) becomes
one Pod pinned to the nodes labelled hybridcam.io/edge-server=<node>: capture and edge-infer with a
memory-backed /dev/shm sized from the group's rings. The compositor, dashboard (and with --cloud the
sampler) are Deployments that read each frame's inline JPEG from the site Redis. Secrets: the
Secret hybridcam-secrets (keys redis-password, dashboard-token) is created by the operator
(`kubectl create secret generic hybridcam-secrets --from-literal=...`), or rendered with random
values by --with-secrets. See docs/kubernetes.md.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from hybridcam.k8s.manifests import RenderOptions, render, to_yaml
from hybridcam.k8s.validation import validate_file
from shared.errors import ConfigError
from shared.site_config import load_site


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    rendering = commands.add_parser("render", help="write the manifests for a site file")
    rendering.add_argument("--site", type=Path, required=True, help="the site file (its placement: the camera groups)")
    rendering.add_argument("--profile", choices=["cluster", "single-node"], default="cluster",
                           help="cluster: site Redis with Sentinel and HAProxy (3 replicas); single-node: one Redis "
                           "(podman kube play, one box). Default cluster")
    rendering.add_argument("--image", default="hybridcam-edge:0.1.0", help="the edge image (default hybridcam-edge:0.1.0)")
    rendering.add_argument("--gpu", action="store_true", help="edge-infer on an NVIDIA GPU (TensorRT image, nvidia.com/gpu: 1)")
    rendering.add_argument("--gpu-image", default="hybridcam-edge-gpu:0.1.0", help="the TensorRT edge image")
    rendering.add_argument("--cloud", action="store_true", help="add the sampler (the cloud path's edge side)")
    rendering.add_argument("--ring-slots", type=int, default=0,
                           help="frames per camera ring (sizes /dev/shm); default 0: one second at each camera's rate, as capture")
    rendering.add_argument("--with-secrets", action="store_true",
                           help="render the Secret with a random Redis password and dashboard token (trials only)")
    rendering.add_argument("--pull-policy", default="IfNotPresent", choices=["IfNotPresent", "Always", "Never"])
    rendering.add_argument("--host-suffix", default="", help="appended to the Service names the services dial; "
                           "podman kube play resolves Pods by their own name: -pod-0 (single-node profile only)")
    rendering.add_argument("--out", type=Path, help="write here instead of standard output")
    validating = commands.add_parser("validate", help="check manifests against the Kubernetes schemas, offline")
    validating.add_argument("files", type=Path, nargs="+")
    validating.add_argument("--kubernetes-version", default="1.30.0", help="schemas of this version (default 1.30.0)")


def run(args: argparse.Namespace) -> int:
    if args.action == "validate":
        failures = 0
        for path in args.files:
            problems = validate_file(path, args.kubernetes_version)
            for problem in problems:
                print(f"{path}: {problem}", file=sys.stderr)
            failures += len(problems)
            if not problems:
                print(f"{path}: every manifest is valid against Kubernetes {args.kubernetes_version}")
        return 1 if failures else 0
    if args.ring_slots == 1 or not 0 <= args.ring_slots <= 1024:
        raise ConfigError(f"--ring-slots is 0 (one second at the camera's rate) or 2 to 1024, not {args.ring_slots}")
    site = load_site(args.site)
    options = RenderOptions(
        profile=args.profile, image=args.image, gpu=args.gpu, gpu_image=args.gpu_image, cloud=args.cloud,
        ring_slots=args.ring_slots, image_pull_policy=args.pull_policy, host_suffix=args.host_suffix,
        redis_password=secrets.token_urlsafe(24) if args.with_secrets else "",
        dashboard_token=secrets.token_urlsafe(24) if args.with_secrets else "")
    text = to_yaml(render(site, args.site.read_text(encoding="utf-8"), options))
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}: {len(site.placement_groups())} edge group(s), profile {args.profile}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
