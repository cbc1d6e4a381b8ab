# Sourced by the scripts that build and run roomring's images with podman.
# Installs podman, runc and debootstrap when missing, points podman at runc
# with this machine's limits, and makes the images.
#
# No image registry is reachable here, so every image's base is made
# locally (debootstrap --variant=minbase bookworm, then podman import), and
# roomring's binary is the host's release build passed in with
# --build-arg BINARY=prebuilt: a Rust builder image cannot be pulled either,
# and the host toolchain builds the same binary. Where registries are
# reachable, `podman build .` (or docker) builds from source in the image's
# own builder stage, with the dependencies cached in their own layer.

podman_base=localhost/roomring-bookworm-minbase

podman_setup() {
  if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
  fi
  podman_conf=$(mktemp)
  cat >"$podman_conf" <<'CONF'
[containers]
# At most the host's own limits: without CAP_SYS_RESOURCE (as in this
# sandbox) a container cannot be given more, and podman's default nproc for
# root (1048576) is more.
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF=$podman_conf
}

# The Debian base every local image starts from.
podman_base_image() {
  podman image exists "$podman_base" && return 0
  local root
  root=$(mktemp -d)
  echo "== making the base image ($podman_base) with debootstrap"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  tar -C "$root" -c . | podman import - "$podman_base" >/dev/null
  rm -rf "$root"
}

# roomring's image, tagged $1, from the host's release build.
podman_roomring_image() {
  podman_base_image
  cargo build --release --locked --bin roomring
  # The docker format keeps the HEALTHCHECK (OCI images have none).
  podman build -q --format docker --build-arg BINARY=prebuilt \
    --build-arg RUNTIME="$podman_base" -t "$1" . >/dev/null
}
