#!/bin/bash
# tests/kvm-in-qemu/run.sh: run tender's KVM backend tests on a machine without
# /dev/kvm, inside a QEMU virtual machine with software emulation (TCG) of an
# AMD CPU that has SVM, where the guest kernel loads kvm_amd.
#
# What it proves: the KVM backend (monitor/kvm) and the integration tests that
# boot real guests work against a real Linux KVM (Debian's kvm.ko/kvm-amd.ko)
# on an SVM implementation: ioctls, register and segment setup, CPL-3 entry,
# the I/O-bitmap hypercalls, fault stubs, kicks, exit decoding.
# What it does not prove: that the same holds on real AMD or Intel hardware,
# or on kvm_pvm. TCG's SVM is an emulation with its own gaps (QEMU 7.2 has no
# nrip-save, for example), and everything runs 10-100x slower than hardware:
# timings and performance figures from this machine are meaningless, and
# timing-sensitive tests may fail for that reason alone.
#
# What it does: installs qemu-system-x86, linux-image-amd64, busybox-static
# and cpio from Debian if missing (root, apt); runs `make all`; builds static
# test binaries of ./monitor/kvm, ./tests and ./monitor; packs them with
# busybox, the KVM modules, the repository's bin/ and init.sh (this directory)
# into an initramfs; boots it under QEMU with serial output in a log; exits 0
# only if the VM's end marker says every test command passed; 1 when a test
# failed; 2 when the VM never reached the end marker (a hang or crash of the
# emulated machine: worth one retry); 3 when the Debian packages it needs
# could not be installed (nothing was tested).
#
# Environment: CPU (QEMU -cpu, default EPYC), NPT (kvm_amd npt=, default:
# the module's default), SMP (1), MEM (2G), TIMEOUT (seconds for the whole
# VM, 1500), TEST_TIMEOUT (go -test.timeout per binary, 5m; a full run needs well under a minute of test time),
# CMD_TIMEOUT (seconds before init sends SIGQUIT to a test binary, 360),
# TESTS_RUN and TESTS_SKIP (the -test.run and -test.skip patterns for ./tests), SOLO5_RUN and SOLO5_SKIP (those of its Solo5 run), KVM_TESTS_SKIP (-test.skip for ./monitor/kvm), WORK (build directory,
# default /tmp/kvm-in-qemu), LOG (serial log, default $WORK/serial.log).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
WORK=${WORK:-/tmp/kvm-in-qemu}
LOG=${LOG:-$WORK/serial.log}
CPU=${CPU:-EPYC}
NPT=${NPT:-}
# One vCPU: with -smp 2, QEMU 7.2 TCG wedged the whole emulated machine in 3 of
# 5 runs (no output, no watchdog, no kernel lockup report) at random tests;
# with -smp 1 it has not.
SMP=${SMP:-1}
MEM=${MEM:-2G}
TIMEOUT=${TIMEOUT:-1500}
TEST_TIMEOUT=${TEST_TIMEOUT:-5m}
CMD_TIMEOUT=${CMD_TIMEOUT:-360}
# Every integration test, in -short mode (100 guests in the leak test; the
# bench command is left to the host), except those that need a TAP device
# and TestReadmeGuest, which builds a guest from README.md with make and gcc
# (the emulated machine has the binaries, not the sources or a compiler).
# Also Solo5 guests on the process backend: when
# such a guest process's far return to a kernel selector faults, the emulated
# machine's kernel (Debian's 6.1 under TCG) oopses ("supervisor read access
# in user mode" on the user stack) and the process dies, as it does for a
# Solo5 guest process of 4 GiB, whose stack is at the top of the 32-bit range
# (TestSolo5Memory4GiB, TestSolo5CLIMemory); on real hosts the same tests
# pass (docs/solo5.md). The Solo5 tests run apart, KVM subtests
# only (SOLO5_RUN; -test.skip splits a pattern at '/' into levels, so one
# pattern cannot skip whole tests and other tests' subtests), without those
# that run both backends in one function or need a TAP device (SOLO5_SKIP).
TESTS_RUN=${TESTS_RUN:-.}
TESTS_SKIP=${TESTS_SKIP:-'TestNetTAP|TestSolo5|TestReadmeGuest'}
SOLO5_RUN=${SOLO5_RUN:-'TestSolo5/kvm'}
SOLO5_SKIP=${SOLO5_SKIP:-'TestSolo5EmulationLoop|TestSolo5BlockReadOnly|TestSolo5TAP'}
KVM_TESTS_SKIP=${KVM_TESTS_SKIP:-'^$'}

say() { echo "kvm-in-qemu: $*" >&2; }

# 1. Debian packages.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
ls /lib/modules/*/kernel/arch/x86/kvm/kvm-amd.ko* >/dev/null 2>&1 && ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v file >/dev/null || need+=(file)
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	if ! { apt-get update -q >&2 &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" kmod >&2; }; then
		say "could not install ${need[*]}: the emulated machine cannot be built"
		exit 3
	fi
fi
file -L /bin/busybox | grep -q 'statically linked' || { say "/bin/busybox is not static (install busybox-static)"; exit 1; }

# The newest kernel that has kvm-amd.ko.
kver=
for d in $(ls -d /lib/modules/*/ | sort -V); do
	k=$(basename "$d")
	[ -f "/boot/vmlinuz-$k" ] && ls "$d"kernel/arch/x86/kvm/kvm-amd.ko* >/dev/null 2>&1 && kver=$k
done
[ -n "$kver" ] || { say "no /boot/vmlinuz-* with kvm-amd.ko"; exit 1; }
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
say "kernel $kernel; $(qemu-system-x86_64 --version | head -1); busybox $(busybox 2>&1 | head -1 | awk '{print $2}')"

# kvm-amd and its dependencies, dependencies first (modules.dep lists them
# so that the last one must be loaded first).
dep_line=$(grep -E '^kernel/arch/x86/kvm/kvm-amd\.ko[^:]*:' "$moddir/modules.dep")
target=${dep_line%%:*}
read -r -a deps <<<"${dep_line#*:}"
mods=()
for ((i = ${#deps[@]} - 1; i >= 0; i--)); do mods+=("${deps[i]}"); done
mods+=("$target")

# 2. Test binaries (static Go).
say "building (make all, go test -c)"
make -s -C "$repo" all >&2
mkdir -p "$WORK"
export CGO_ENABLED=0
(cd "$repo" &&
	go test -c -o "$WORK/kvm.test" ./monitor/kvm &&
	go test -c -o "$WORK/tests.test" ./tests &&
	go test -c -o "$WORK/monitor.test" ./monitor) >&2

# 3. The initramfs.
root=$WORK/root
rm -rf "$root"
mkdir -p "$root"/{bin,fakebin,proc,sys,dev,tmp,root,etc/kvm-in-qemu,lib/modules,opt/kvmtests}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
printf '#!/bin/sh\n# The test binaries run `make`; their inputs were built on the host.\nexit 0\n' >"$root/fakebin/make"
chmod +x "$root/fakebin/make"
install -m 0755 "$here/init.sh" "$root/init"
modlist=
for m in "${mods[@]}"; do
	src=$moddir/$m
	dst=$root/lib/modules/$(basename "$m")
	case "$m" in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz) dst=${dst%.xz}; xz -dc "$src" >"$dst" ;;
	*.ko.zst) dst=${dst%.zst}; zstd -qdc "$src" >"$dst" ;;
	*.ko.gz) dst=${dst%.gz}; gzip -dc "$src" >"$dst" ;;
	*) say "unknown module format: $m"; exit 1 ;;
	esac
	modlist="$modlist /lib/modules/$(basename "$dst")"
done
{
	echo "MODULES=\"${modlist# }\""
	echo "CMD_TIMEOUT=$CMD_TIMEOUT"
} >"$root/etc/kvm-in-qemu/config"
# The tests find guests, bin/tender and the Makefile through the repository's
# absolute path, and the monitor's examples through ../bin from monitor/.
mkdir -p "$root$repo/monitor" "$root$repo/tests" "$root$repo/monitor/kvm"
cp -a "$repo/bin" "$root$repo/bin"
cp "$repo/Makefile" "$root$repo/Makefile"
cp "$WORK"/{kvm,tests,monitor}.test "$root/opt/kvmtests/"
export_env="env TENDER_REQUIRE_KVM=1"
cat >"$root/etc/kvm-in-qemu/tests" <<TESTS
monitor/kvm|$repo/monitor/kvm|$export_env /opt/kvmtests/kvm.test -test.v -test.timeout $TEST_TIMEOUT -test.skip '$KVM_TESTS_SKIP'
tests|$repo/tests|$export_env /opt/kvmtests/tests.test -test.v -test.short -test.timeout $TEST_TIMEOUT -test.run '$TESTS_RUN' -test.skip '$TESTS_SKIP'
solo5|$repo/tests|$export_env /opt/kvmtests/tests.test -test.v -test.short -test.timeout $TEST_TIMEOUT -test.run '$SOLO5_RUN' -test.skip '$SOLO5_SKIP'
monitor|$repo/monitor|$export_env /opt/kvmtests/monitor.test -test.v -test.timeout $TEST_TIMEOUT
TESTS
initrd=$WORK/initrd.cpio
(cd "$root" && find . | cpio -o -H newc --quiet) >"$initrd"
say "initramfs $initrd ($(du -h "$initrd" | cut -f1), uncompressed: faster to unpack under TCG)"

# 4. Boot.
append="console=ttyS0 panic=-1 quiet"
[ -n "$NPT" ] && append="$append kiq.npt=$NPT"
say "booting: -cpu $CPU -smp $SMP -m $MEM, serial log $LOG, at most ${TIMEOUT}s"
start=$(date +%s)
set +e
timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 \
	-machine q35,accel=tcg -cpu "$CPU" -smp "$SMP" -m "$MEM" \
	-kernel "$kernel" -initrd "$initrd" -append "$append" \
	-display none -monitor none -nic none -no-reboot \
	-chardev "stdio,id=ser0,signal=off,logfile=$LOG" -serial chardev:ser0 \
	</dev/null 2>"$WORK/qemu.stderr"
qrc=$?
set -e
say "QEMU exited with $qrc after $(( $(date +%s) - start ))s"
grep -v 'TCG doesn.t support requested feature' "$WORK/qemu.stderr" >&2 || true

# 5. Verdict.
echo "----- summary -----"
tr -d '\r' <"$LOG" | grep -E '^(KIQ:(KERNEL|CPU|VENDOR|INSMOD|PARAM|NOKVM|KVM |RESULT|END)|--- FAIL)' || true
end=$(tr -d '\r' <"$LOG" | grep -E '^KIQ:END ' | tail -1 | cut -d' ' -f2-)
# Top-level tests and examples of every binary, as go test counts them.
passed=$(tr -d '\r' <"$LOG" | grep -cE '^--- PASS' || true)
failed=$(tr -d '\r' <"$LOG" | grep -cE '^--- FAIL' || true)
echo "kvm-in-qemu: $passed passed, $failed failed"
case "$end" in
all-passed) echo "kvm-in-qemu: PASS"; exit 0 ;;
"") echo "kvm-in-qemu: FAIL (no end marker; QEMU exit $qrc)"; exit 2 ;;
*) echo "kvm-in-qemu: FAIL ($end)"; exit 1 ;;
esac
