#!/bin/sh
# Installs and purges a fedsts .deb for real (dpkg, the maintainer scripts, adduser) inside a
# private mount namespace whose /etc, /usr and /var are overlays on the host's, so nothing
# reaches the host. Run by tests/package.rs as: unshare -m --propagation private sh THIS DEB DIR
# (DIR: an empty scratch directory for the overlays). Prints what the test asserts on.
set -eu
deb=$1
scratch=$2

for d in etc usr var; do
    mkdir -p "$scratch/$d/upper" "$scratch/$d/work"
    mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=$scratch/$d/upper,workdir=$scratch/$d/work" "/$d"
done
# A private /run keeps the host's systemd (if any) out of reach of the maintainer scripts.
mount -t tmpfs tmpfs /run

export DEBIAN_FRONTEND=noninteractive
echo "== install"
dpkg -i "$deb"
echo "== user"
getent passwd fedsts | cut -d: -f1,6,7
echo "== modes"
stat -c '%n %U:%G %a' /etc/fedsts /etc/fedsts/fedsts.toml /etc/fedsts/users.toml \
    /etc/fedsts/tls.crt /etc/fedsts/tls.key \
    /var/lib/fedsts /var/lib/fedsts/signing.crt /var/lib/fedsts/signing.key
echo "== check-config as fedsts"
setpriv --reuid=fedsts --regid=fedsts --init-groups \
    /usr/bin/fedsts check-config --config /etc/fedsts/fedsts.toml
echo "== read as nobody"
for f in /etc/fedsts/users.toml /etc/fedsts/tls.key /var/lib/fedsts/signing.key; do
    if setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$f" >/dev/null 2>&1; then
        echo "readable $f"
    else
        echo "refused $f"
    fi
done
echo "== purge"
dpkg --purge fedsts
for f in /var/lib/fedsts /etc/fedsts/tls.key /etc/fedsts/fedsts.toml; do
    if [ -e "$f" ]; then echo "left $f"; else echo "gone $f"; fi
done
dpkg-statoverride --list /etc/fedsts || echo "no override /etc/fedsts"
echo "== done"
