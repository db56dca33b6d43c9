#!/usr/bin/env bash
# Builds a minimal stack image into DEST from Debian's busybox-static:
# the usual directories, mountpoints for /proc, /dev, /app, /tmp, and an /etc
# with passwd/group entries for the dyno uid range.
#
#   rootfs/build.sh DEST                  busybox stack (installs busybox-static if missing)
#   rootfs/build.sh --debian DEST         full Debian stack with debootstrap, as a
#                                         production stack would be (Heroku's are Ubuntu);
#                                         needs the network to Debian's mirror, not used by CI
#
# As root. Environment: DYNO_UID_FIRST, DYNO_UID_LAST (default 100000-165535,
# the agent's default uid_range); DEBIAN_SUITE (default bookworm).
set -euo pipefail

flavor=busybox
if [ "${1:-}" = "--debian" ]; then
  flavor=debian
  shift
fi
dest=${1:?usage: rootfs/build.sh [--debian] DEST}
first=${DYNO_UID_FIRST:-100000}
last=${DYNO_UID_LAST:-165535}

# /etc entries every stack needs: a dyno<uid> user and group per uid.
write_users() {
  local etc=$1
  awk -v f="$first" -v l="$last" 'BEGIN { for (u = f; u <= l; u++) printf "dyno%d:x:%d:%d:dyno:/app:/bin/sh\n", u, u, u }' >> "$etc/passwd"
  awk -v f="$first" -v l="$last" 'BEGIN { for (u = f; u <= l; u++) printf "dyno%d:x:%d:\n", u, u }' >> "$etc/group"
}

if [ "$flavor" = debian ]; then
  if ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  staging="$dest.staging.$$"
  trap 'rm -rf "$staging"' EXIT
  debootstrap --variant=minbase "${DEBIAN_SUITE:-bookworm}" "$staging"
  mkdir -p "$staging/app"
  write_users "$staging/etc"
  rm -rf "$dest"
  mv "$staging" "$dest"
  trap - EXIT
  echo "debian stack built in $dest ($(du -sh "$dest" | cut -f1))"
  exit 0
fi

# The static build: the stack has no libc for a dynamic one.
busybox=/bin/busybox
if ! dpkg -s busybox-static >/dev/null 2>&1; then
  echo "rootfs/build.sh: installing busybox-static" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
"$busybox" --list >/dev/null

staging="$dest.staging.$$"
trap 'rm -rf "$staging"' EXIT
rm -rf "$staging"
mkdir -p "$staging"
cd "$staging"
mkdir -p bin sbin usr/bin usr/sbin usr/local/bin etc proc sys dev app tmp root home var/tmp run
chmod 1777 tmp var/tmp
chmod 0700 root

cp "$busybox" bin/busybox
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] && continue
  [ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > etc/group
write_users etc
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > etc/hosts
if [ -s /etc/resolv.conf ]; then cp /etc/resolv.conf etc/resolv.conf; else echo "nameserver 127.0.0.53" > etc/resolv.conf; fi
echo "dyno" > etc/hostname
printf 'hosts: files dns\n' > etc/nsswitch.conf

cd - >/dev/null
rm -rf "$dest"
mv "$staging" "$dest"
trap - EXIT
echo "stack built in $dest ($(du -sh "$dest" | cut -f1))"
