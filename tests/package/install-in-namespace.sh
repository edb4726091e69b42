#!/bin/sh
# Installs and purges a fedsts .deb for real (dpkg, the maintainer scripts, adduser) inside a
# private mount namespace whose /etc, /usr and /var are overlays on the host's, so nothing
# reaches the host, and a private network namespace (only loopback), so the shipped
# configuration's ports 443 and 8081 are free. Between the two it runs the installed service the
# way the unit does: as fedsts with only CAP_NET_BIND_SERVICE, no new privileges, /etc and /usr
# read-only. Run by tests/package.rs as:
#   unshare -m -n --propagation private sh THIS DEB DIR RST USER PASSWORD_HASH
# (DIR: an empty scratch directory for the overlays; RST: a usernamemixed request for USER).
# Prints what the test asserts on.
set -eu
deb=$1
scratch=$2
rst=$3
user=$4
hash=$5

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
echo "== serve as the unit does"
printf '\n[[users]]\nupn = "%s"\nimmutable_id = "1TIu064jGEmmf+hnI+F0Jg=="\npassword = "%s"\n' \
    "$user" "$hash" >> /etc/fedsts/users.toml
ip link set lo up
mount -o remount,ro /etc
mount -o remount,ro /usr
setpriv --reuid=fedsts --regid=fedsts --init-groups --no-new-privs \
    --bounding-set=-all,+net_bind_service --inh-caps=-all,+net_bind_service \
    --ambient-caps=-all,+net_bind_service \
    /usr/bin/fedsts serve --config /etc/fedsts/fedsts.toml >"$scratch/serve.out" 2>"$scratch/serve.log" &
server=$!
tries=0
until curl -s -o /dev/null --max-time 2 http://127.0.0.1:8081/healthz; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ] || ! kill -0 "$server" 2>/dev/null; then
        echo "no health answer"; cat "$scratch/serve.log"; kill "$server" 2>/dev/null || true; exit 1
    fi
    sleep 0.2
done
echo "healthz $(curl -s --max-time 5 http://127.0.0.1:8081/healthz)"
status=$(curl -sk --max-time 20 -o "$scratch/token.xml" -w '%{http_code}' \
    -H 'Content-Type: application/soap+xml; charset=utf-8' --data-binary "@$rst" \
    https://127.0.0.1:443/wsfed/example/trust/13/usernamemixed)
echo "token $status"
if grep -q '<saml:Assertion' "$scratch/token.xml"; then echo "assertion"; fi
kill "$server"
wait "$server" || true
mount -o remount,rw /etc
mount -o remount,rw /usr
stat -c '%n %U:%G %a' /var/lib/fedsts/session.key
echo "== purge"
dpkg --purge fedsts
for f in /var/lib/fedsts /etc/fedsts/tls.key /etc/fedsts/fedsts.toml; do
    if [ -e "$f" ]; then echo "left $f"; else echo "gone $f"; fi
done
dpkg-statoverride --list /etc/fedsts || echo "no override /etc/fedsts"
echo "== done"
