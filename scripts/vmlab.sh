#!/usr/bin/env bash
# The VM lab's host side: a real libvirtd + QEMU on this machine, started by hand (no systemd),
# and the tiny guest payload (Debian cloud kernel + busybox initramfs) built from Debian packages.
#
#   scripts/vmlab.sh start    install what is missing, build the payload, start virtlogd + libvirtd
#   scripts/vmlab.sh stop     stop the daemons (guests first: destroy them through the portal)
#   scripts/vmlab.sh status
#
# Guests run under TCG (<domain type='qemu'>): this machine's /dev/kvm is paravirtual and
# standard guests hang under it. Exits non-zero (with the reason) when the lab cannot run here.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# QEMU runs as libvirt-qemu, which may not traverse the checkout (a clone under /root is mode 0700):
# the guest lives under /var/lib, and var/lab/payload in the checkout links to it.
PAYLOAD="${LAB_PAYLOAD_DIR:-/var/lib/portal-lab/payload}"
PY="${PY:-$ROOT/.venv/bin/python}"
PKGS=(libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86)
BANNER="LAB-GUEST-READY"
log() { echo "[vmlab] $*" >&2; }

running() {  # pidfile of the system instance is /run/<daemon>.pid
    local pf=/run/$1.pid
    [ -s "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null && [ "$(cat "/proc/$(cat "$pf")/comm" 2>/dev/null)" = "$1" ]
}

install_packages() {
    local missing=()
    for pkg in "${PKGS[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} (no recommends)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    }
}

prepare_host() {
    # What libvirt-daemon-system's maintainer scripts would do (that package pulls polkit and init scripts).
    getent group kvm >/dev/null || groupadd --system kvm
    getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
    getent passwd libvirt-qemu >/dev/null || useradd --system --gid kvm --groups libvirt-qemu \
        --home-dir /var/lib/libvirt --no-create-home --shell /usr/sbin/nologin --comment "Libvirt Qemu" libvirt-qemu
    if [ -c /dev/kvm ]; then chgrp kvm /dev/kvm; chmod 660 /dev/kvm; fi
    install -d -m 0755 /var/log/libvirt          # the daemons refuse to start without it
    install -d -m 0700 /var/log/libvirt/qemu     # per-domain logs and the guests' serial logs
}

# The guest's init. A shell on the serial console (ttyS0, logged to <domain>-serial.log) and one on the
# VGA console (tty1: what VNC and the portal's console show) whose prompt names the desktop: the lab
# driver appends portal.desktop=<domain name> to the kernel command line. The ready banner goes to the
# serial log once both shells are started (the portal waits for it before calling a desktop running).
write_init() {
    cat > "$1" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
insmod /lib/modules/evdev.ko; insmod /lib/modules/button.ko
acpid -l /tmp/acpid.log
name=lab-guest
for arg in \$(cat /proc/cmdline); do
    case "\$arg" in portal.desktop=*) name="\${arg#portal.desktop=}" ;; esac
done
hostname "\$name"
export HOME=/root PS1="\$name # " TERM=linux
cd /root
vga_shell() {
    while true; do
        printf '\033c%s\n%s\n\n' "GPU portal lab guest: \$name" "(echo text > /dev/ttyS0 writes to its serial log)" >/dev/tty1
        setsid -c sh -i </dev/tty1 >/dev/tty1 2>&1 || sleep 5
    done
}
vga_shell &
echo
echo "$BANNER name=\$name uptime=\$(cut -d' ' -f1 /proc/uptime) kernel=\$(uname -r)"
while true; do setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' || sleep 5; done
INIT
    chmod 755 "$1"
}

# A stamp of the recipe: a changed init (or payload recipe) is rebuilt by the next `start`.
payload_stamp() {
    { echo "payload-recipe-2 $BANNER"; declare -f write_init make_payload; } | sha256sum | cut -c1-16
}

build_payload() {
    local stamp; stamp=$(payload_stamp)
    if [ -s "$PAYLOAD/vmlinuz" ] && [ -s "$PAYLOAD/initrd.gz" ] && [ "$(cat "$PAYLOAD/STAMP" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    log "building the guest payload $stamp into $PAYLOAD"
    make_payload
    echo "$stamp" > "$PAYLOAD/STAMP"
    chmod 644 "$PAYLOAD/STAMP"
}

make_payload() {
    local work; work=$(mktemp -d)
    trap 'rm -rf "$work"; trap - RETURN' RETURN
    mkdir -p "$PAYLOAD"
    (
        cd "$work"
        kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
        if [ -z "$kpkg" ]; then apt-get update -qq; kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}'); fi
        [ -n "$kpkg" ] || { log "cannot resolve the cloud kernel package"; exit 1; }
        apt-get download -qq "$kpkg" busybox-static 2>&1 | grep -v unsandboxed || true
        # The kernel, plus the two modules that let an ACPI power-button press (virDomain.shutdown) power off.
        dpkg-deb --fsys-tarfile "$kpkg"_*.deb | tar -x --wildcards './boot/vmlinuz-*' \
            './lib/modules/*/kernel/drivers/acpi/button.ko' './lib/modules/*/kernel/drivers/input/evdev.ko'
        mkdir bb && dpkg-deb -x busybox-static_*.deb bb
        r=$work/root
        mkdir -p "$r"/{bin,sbin,dev,proc,sys,tmp,etc/acpi/PWRF,root,lib/modules}
        cp bb/bin/busybox "$r/bin/busybox"
        cp lib/modules/*/kernel/drivers/acpi/button.ko lib/modules/*/kernel/drivers/input/evdev.ko "$r/lib/modules/"
        printf '#!/bin/sh\necho LAB-GUEST-POWEROFF > /dev/ttyS0\nsync\npoweroff -f\n' > "$r/etc/acpi/PWRF/00000080"
        chmod 755 "$r/etc/acpi/PWRF/00000080"
        mknod -m 600 "$r/dev/console" c 5 1
        mknod -m 666 "$r/dev/null" c 1 3
        mknod -m 660 "$r/dev/ttyS0" c 4 64
        mknod -m 620 "$r/dev/tty1" c 4 1
        write_init "$r/init"
        # Written beside, then renamed: guests booting meanwhile keep reading the files they opened.
        ( cd "$r" && find . | "$work/bb/bin/busybox" cpio -o -H newc -R 0:0 2>/dev/null | gzip -9 ) > "$PAYLOAD/.initrd.gz.new"
        cp boot/vmlinuz-* "$PAYLOAD/.vmlinuz.new"
        chmod 644 "$PAYLOAD/.initrd.gz.new" "$PAYLOAD/.vmlinuz.new"
        mv -f "$PAYLOAD/.vmlinuz.new" "$PAYLOAD/vmlinuz"
        mv -f "$PAYLOAD/.initrd.gz.new" "$PAYLOAD/initrd.gz"
    )
    chmod 755 "$PAYLOAD"
}

start_daemon() {
    running "$1" && return 0
    "/usr/sbin/$1" -d
    log "$1 started (pid $(cat "/run/$1.pid"))"
}

wait_ready() {
    for _ in $(seq 100); do
        "$PY" - <<'PYEOF' 2>/dev/null && return 0
import libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
libvirt.open("qemu:///system").close()
PYEOF
        sleep 0.1
    done
    log "libvirtd does not answer on qemu:///system; see /var/log/libvirt/libvirtd.log"
    tail -5 /var/log/libvirt/libvirtd.log >&2 || true
    return 1
}

stop_daemon() {
    running "$1" || return 0
    local pid; pid=$(cat "/run/$1.pid")
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    log "$1 ($pid) did not exit"; return 1
}

case "${1:-start}" in
    start)
        install_packages
        prepare_host
        build_payload
        mkdir -p "$ROOT/var/lab"
        [ -e "$ROOT/var/lab/payload" ] || ln -s "$PAYLOAD" "$ROOT/var/lab/payload"
        start_daemon virtlogd
        start_daemon libvirtd
        wait_ready
        echo "VM lab ready: qemu:///system, guest payload in $PAYLOAD"
        ;;
    stop) stop_daemon libvirtd; stop_daemon virtlogd ;;
    status)
        for d in virtlogd libvirtd; do
            if running "$d"; then echo "$d running (pid $(cat "/run/$d.pid"))"; else echo "$d stopped"; fi
        done
        ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
