#!/usr/bin/env bash
# Make a Docker-less Debian 12 host able to build and run hybridcam's docker-compose stack with
# podman: podman + its Docker-compatible API + Debian's docker-compose 1.29. Needs root and apt.
# On a host where Docker (or a podman API socket) already answers it does nothing.
#
#   sudo scripts/container-host-setup.sh        # once per boot (idempotent; `make compose-test` runs it)
#   export DOCKER_HOST=unix:///run/podman/podman.sock   # then docker-compose talks to podman
#
# What it does, and why each step is needed on such a host (none of it on a normal Docker host):
#  1. apt: podman runc netavark aardvark-dns iptables debootstrap docker-compose catatonit.
#     catatonit: the pause process of a podman Pod's infra container (`podman kube play`).
#     netavark needs iptables for the compose network; aardvark-dns resolves service names.
#  2. Where setrlimit beyond the current hard limit is refused (containers or VMs without
#     CAP_SYS_RESOURCE), an OCI runtime wrapper strips the rlimits from the container spec before
#     calling runc; otherwise every `run` and `exec` fails with "error setting rlimits".
#  3. /etc/containers/containers.conf (only when absent or written by this script): the cgroupfs
#     manager where systemd is not running, the wrapper as runtime, netavark networking.
#  4. Base images without a registry: builds a Debian 12 root filesystem with debootstrap
#     (python3, pip) and imports it under the name docker/Dockerfile's FROM line uses, and builds a
#     redis image from it (Debian's redis-server 7.0; --protected-mode no, as the official image's
#     entrypoint does) under the name docker-compose.yml uses. The host's CA bundle is copied in, so
#     pip works behind a TLS-intercepting proxy. Images that already exist are kept.
#  5. Starts `podman system service` on $PODMAN_SOCK and, where systemd does not run the health
#     checks' timers, a loop that runs every container's health check every 2 s, so
#     `depends_on: condition: service_healthy` and `up` work. Both stop by themselves after
#     $PODMAN_SERVICE_S seconds (default 3600).
# Build the project's images with `podman build --network host --pull=never` (DNS inside build
# containers may not resolve package hosts otherwise); `make compose-test` does.
# The GPU image (docker/Dockerfile.gpu) needs NVIDIA's base image from a registry: not built here.
set -euo pipefail
cd "$(dirname "$0")/.."
SOCK=${PODMAN_SOCK:-/run/podman/podman.sock}
LIFETIME_S=${PODMAN_SERVICE_S:-3600}
LOG_DIR=${PODMAN_LOG_DIR:-/var/log/hybridcam-podman}
# Docker's short names, spelled out as podman stores images pulled from Docker Hub.
full_name() { case "$1" in */*/*|*.*/*) echo "$1" ;; */*) echo "docker.io/$1" ;; *) echo "docker.io/library/$1" ;; esac; }
PY_IMAGE=$(full_name "${1:-$(awk '/^FROM /{print $2; exit}' docker/Dockerfile)}")
REDIS_IMAGE=$(full_name "${2:-$(sed -n 's/^ *image: \(redis:[^ ]*\)$/\1/p' docker-compose.yml | head -1)}")
MARK="# written by hybridcam scripts/container-host-setup.sh"
say() { echo "container host: $*"; }
export DEBIAN_FRONTEND=noninteractive

answers() { curl -sf --max-time 3 --unix-socket "$1" http://d/_ping >/dev/null 2>&1; }
if [ -z "${FORCE_PODMAN:-}" ]; then
  for sock in "${DOCKER_HOST:+${DOCKER_HOST#unix://}}" /var/run/docker.sock; do
    if [ -n "$sock" ] && [ -S "$sock" ] && answers "$sock" && ! curl -s --unix-socket "$sock" http://d/version | grep -qi podman; then
      say "a Docker engine answers on $sock: nothing to set up"; exit 0
    fi
  done
fi
[ "$(id -u)" -eq 0 ] || { echo "container host: needs root (sudo $0) to install and configure podman" >&2; exit 1; }
command -v apt-get >/dev/null || { echo "container host: not a Debian host (no apt-get); install Docker or podman yourself" >&2; exit 1; }
# One setup at a time (CI starts one in the background; the container test may start another).
mkdir -p /run/lock && exec 9>/run/lock/hybridcam-container-host.lock && flock 9

# 1. packages
need=(podman runc netavark aardvark-dns iptables debootstrap docker-compose curl ca-certificates catatonit)
missing=(); for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. rlimits
runtime_line=""
if ! python3 -c 'import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (1048576, 1048576))' 2>/dev/null; then
  cat > /usr/local/bin/runc-no-rlimits <<'WRAP'
#!/bin/bash
# runc, minus the spec's rlimits (setrlimit beyond the current hard limit is not permitted on this host).
args=("$@")
# The specs are compact JSON and rlimits entries hold only numbers: sed is enough, and an exec
# (every health check is one) does not pay for a Python start.
strip() { sed -i -E 's/,"rlimits":\[[^]]*\]//; s/"rlimits":\[[^]]*\],?//' "$1"; }
for ((i=0;i<${#args[@]};i++)); do
  case "${args[$i]}" in
    --bundle|-b) [ -f "${args[$((i+1))]}/config.json" ] && strip "${args[$((i+1))]}/config.json" ;;
    --process|-p) [ -f "${args[$((i+1))]}" ] && strip "${args[$((i+1))]}" ;;
  esac
done
exec /usr/bin/runc "$@"
WRAP
  chmod +x /usr/local/bin/runc-no-rlimits
  runtime_line='runtime = "norlimits"'
  say "setrlimit is restricted here: containers run through /usr/local/bin/runc-no-rlimits"
fi

# 3. containers.conf
conf=/etc/containers/containers.conf
if [ ! -f "$conf" ] || grep -q "^$MARK" "$conf"; then
  mkdir -p /etc/containers
  {
    echo "$MARK"
    echo "[engine]"
    [ -d /run/systemd/system ] || echo 'cgroup_manager = "cgroupfs"'
    [ -n "$runtime_line" ] && echo "$runtime_line"
    [ -n "$runtime_line" ] && printf '[engine.runtimes]\nnorlimits = ["/usr/local/bin/runc-no-rlimits"]\n'
    printf '[network]\nnetwork_backend = "netavark"\n'
  } > "$conf.new"
  if ! cmp -s "$conf.new" "$conf"; then mv "$conf.new" "$conf"; else rm -f "$conf.new"; fi
else
  say "keeping $conf (not written by this script)"
fi
if [ "$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null)" != "netavark" ]; then
  say "switching podman to netavark (resets podman's storage)"
  podman system reset --force >/dev/null 2>&1 || true
fi

# 4. base images
if ! podman image exists "$PY_IMAGE"; then
  say "building $PY_IMAGE from Debian 12 with debootstrap (no registry needed; about 2 minutes)"
  root=$(mktemp -d)
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,passwd \
    bookworm "$root" ${mirror:+"$mirror"} >/dev/null
  rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
  ln -sf python3 "$root/usr/bin/python"; ln -sf pip3 "$root/usr/bin/pip"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$root/etc/pip.conf"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import --change 'CMD ["python3"]' - "$PY_IMAGE" >/dev/null
  rm -rf "$root"
fi
if ! podman image exists "$REDIS_IMAGE"; then
  say "building $REDIS_IMAGE from $PY_IMAGE (Debian's redis-server)"
  ctx=$(mktemp -d)
  cat > "$ctx/Containerfile" <<CF
FROM $PY_IMAGE
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/* && mkdir -p /data
RUN printf '#!/bin/sh\nif [ "\$1" = "redis-server" ]; then shift; exec redis-server --protected-mode no "\$@"; fi\nexec "\$@"\n' > /usr/local/bin/entry.sh && chmod +x /usr/local/bin/entry.sh
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/entry.sh"]
CMD ["redis-server"]
CF
  podman build --network host --pull=never -t "$REDIS_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# 5. the API socket and the health-check loop
mkdir -p "$(dirname "$SOCK")" "$LOG_DIR"
if ! answers "$SOCK"; then
  rm -f "$SOCK"
  # started from / : conmon inherits the service's working directory, and a checkout that is removed later
  # (a CI clone) would leave every new container stuck in "created" ("Failed to get working directory")
  (cd / && nohup timeout "$LIFETIME_S" podman system service --time=0 "unix://$SOCK" >"$LOG_DIR/service.log" 2>&1 &)
fi
if [ ! -d /run/systemd/system ]; then
  cat > /usr/local/bin/podman-health-driver <<'DRIVER'
#!/usr/bin/env python3
"""Run podman containers' health checks (systemd timers do this where systemd runs).

A container still starting is checked every 3 s, others at their own interval; never two
checks of one container at once. Every check is a `podman healthcheck run` (an exec), so
checking more often than that would cost a busy 2-core host more than the services do."""
import http.client, json, socket, subprocess, sys, time
sock_path = sys.argv[1]
def containers():
    found = []
    for health in ("starting", "healthy", "unhealthy"):
        connection = http.client.HTTPConnection("podman", timeout=10)
        connection.sock = socket.socket(socket.AF_UNIX); connection.sock.connect(sock_path)
        connection.request("GET", '/containers/json?filters={"health":["%s"]}' % health)
        found += [(c["Id"], health) for c in json.loads(connection.getresponse().read())]
    return found
running, due = {}, {}
while True:
    now = time.monotonic()
    try:
        listed = containers()
    except (OSError, ValueError):
        time.sleep(2); continue
    for cid, status in listed:
        if cid in running and running[cid].poll() is None:
            continue
        if now >= due.get(cid, 0):
            running[cid] = subprocess.Popen(["podman", "healthcheck", "run", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            due[cid] = now + (3 if "starting" in status else 10)
    time.sleep(1)
DRIVER
  chmod +x /usr/local/bin/podman-health-driver
  if ! pgrep -f "podman-health-driver" >/dev/null; then
    (cd / && nohup timeout "$LIFETIME_S" /usr/local/bin/podman-health-driver "$SOCK" >"$LOG_DIR/health-driver.log" 2>&1 &)
  fi
fi
for _ in $(seq 100); do answers "$SOCK" && break; sleep 0.2; done
answers "$SOCK" || { echo "container host: podman's API did not answer on $SOCK (see $LOG_DIR/service.log)" >&2; exit 1; }
say "podman $(podman --version | awk '{print $3}') ready: export DOCKER_HOST=unix://$SOCK"
