#!/bin/sh
# /init of the kvm-in-qemu initramfs (see run.sh next to this file).
# Mounts the pseudo file systems, loads KVM, runs the test commands listed in
# /etc/kvm-in-qemu/tests and powers the machine off. Every line the host
# script parses starts with "KIQ:".
/bin/busybox --install -s /bin
export PATH=/fakebin:/bin
export HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# /tmp stays on the (writable) initramfs: the repository may live under it.
chmod 1777 /tmp
mkdir -p /root
ip link set lo up 2>/dev/null

. /etc/kvm-in-qemu/config

finish() {
	echo "KIQ:END $1"
	sync
	poweroff -f
	sleep 5
	echo o >/proc/sysrq-trigger
}

echo "KIQ:KERNEL $(uname -r)"
echo "KIQ:CPU $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-)"
echo "KIQ:CPUFLAGS-SVM $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(svm|npt|nrip_save|avx|avx2|xsave|vendor)$' | tr '\n' ' ')"
echo "KIQ:VENDOR $(grep -m1 '^vendor_id' /proc/cpuinfo | cut -d: -f2-)"

npt=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^kiq.npt=//p')
for m in $MODULES; do
	args=
	case "$m" in
	*kvm-amd.ko) [ -n "$npt" ] && args="npt=$npt" ;;
	esac
	if insmod "$m" $args; then
		echo "KIQ:INSMOD ok $m $args"
	else
		echo "KIQ:INSMOD failed $m $args"
	fi
done
dmesg | grep -i -E 'kvm|svm|npt' | sed 's/^/KIQ:DMESG /'
for p in /sys/module/kvm_amd/parameters/npt /sys/module/kvm_amd/parameters/nested /sys/module/kvm_amd/parameters/nrips /sys/module/kvm_amd/parameters/avic; do
	[ -r "$p" ] && echo "KIQ:PARAM $p=$(cat "$p")"
done
if [ ! -c /dev/kvm ]; then
	echo "KIQ:NOKVM /dev/kvm is missing"
	finish "nokvm"
fi
echo "KIQ:KVM $(ls -l /dev/kvm)"

# Each line of the tests file: NAME|DIRECTORY|COMMAND
failed=
while IFS='|' read -r name dir cmd; do
	[ -z "$name" ] && continue
	case "$name" in \#*) continue ;; esac
	echo "KIQ:BEGIN $name: (cd $dir && $cmd)"
	start=$(date +%s)
	# A watchdog: SIGQUIT makes a Go test binary print every goroutine's
	# stack and exit, so a hung test still says where it hung.
	(cd "$dir" && eval "timeout -s QUIT $CMD_TIMEOUT $cmd") </dev/null 2>&1
	rc=$?
	echo "KIQ:RESULT $name rc=$rc seconds=$(( $(date +%s) - start ))"
	[ "$rc" -ne 0 ] && failed="$failed $name"
	dmesg | tail -n 20 | grep -i -E 'kvm|svm' | sed 's/^/KIQ:DMESG-AFTER /'
done </etc/kvm-in-qemu/tests

if [ -z "$failed" ]; then
	finish "all-passed"
else
	finish "failed:$failed"
fi
