#!/usr/bin/env bash
# A Debian trixie chroot with Blender 4.3 (system Python 3.13) and Xvfb for the GUI tests.
# Idempotent: a finished chroot is kept (marker file) and only its mounts are renewed.
# Needs root, debootstrap and the host's Debian mirror. ~2 min and ~1.8 GB the first time.
set -euo pipefail
CHROOT=${1:-${BITWRK_GUI_CHROOT:-/var/cache/bitwrk-gui/trixie}}
# bubblewrap: the seller in the chroot sandboxes its workers like any other Linux seller.
PACKAGES="blender xvfb xauth libgl1-mesa-dri x11-apps imagemagick python3-numpy python3-openimageio bubblewrap"
if [ ! -f "$CHROOT/.bitwrk-ready" ]; then
    command -v debootstrap >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
    MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    mkdir -p "$CHROOT"
    [ -x "$CHROOT/usr/bin/apt-get" ] || debootstrap --variant=minbase trixie "$CHROOT" "$MIRROR"
fi
for d in proc dev sys; do
    mountpoint -q "$CHROOT/$d" || mount --bind "/$d" "$CHROOT/$d"
done
# The marker holds the package list it was made with: a longer list installs what is new.
if [ "$(cat "$CHROOT/.bitwrk-ready" 2>/dev/null)" != "$PACKAGES" ]; then
    chroot "$CHROOT" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $PACKAGES"
    echo "$PACKAGES" > "$CHROOT/.bitwrk-ready"
fi
echo "$CHROOT"
