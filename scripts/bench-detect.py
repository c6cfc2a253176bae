#!/usr/bin/env python3
"""Where launch -> ready goes for the trivial init and for vminit, seen from the host.

For each boot (microvm, the cached Debian vmlinux, TCG, the benchmark's images) it records,
on the host's clock: when the kernel's "Run /init" line reaches the console (both images), and
when the trivial init's line reaches it or when the first /health 200 arrives through slirp's
hostfwd (a fresh probe every 20 ms from launch, as bench-boot polls). vminit's own PID 1 ->
ready comes from the guest's console timestamps. So:

  host PID 1 -> done    the init's cost as the benchmark sees it;
  guest PID 1 -> ready  vminit's own timeline;
  the difference        what the detection path adds: slirp holding every probe's SYN until the
                        guest has its address, then the kernel taking the whole burst.

Usage: scripts/bench-detect.py [RUNS]   (default 7; needs scripts/setup.sh's build and kernel)
"""
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "target/release/qemu-harness")
PORT = 18977  # the first of the host ports used, one per boot: a killed QEMU's port may linger


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT).stdout


def tsc_khz():
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            return round(float(line.split(":")[1]) * 1000)
    return 2_600_000


def boot(kind, kernel, img, tmp, port):
    log = os.path.join(tmp, f"{kind}.console")
    open(log, "w").close()
    # As qemu-harness does on microvm: no HPET or PM timer to calibrate the TSC against, and a
    # boot without the rate can hang in calibration under TCG.
    append = f"console=ttyS0 panic=-1 reboot=t tsc_early_khz={tsc_khz()}"
    if kind == "vminit":
        append += " ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off"
    cmd = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
           "-no-reboot", "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on",
           "-accel", "tcg", "-m", "256", "-smp", "1", "-kernel", kernel, "-initrd", img,
           "-append", append, "-chardev", f"file,id=con0,path={log}",
           "-serial", "chardev:con0", "-device", "i8042",
           "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:8900",
           "-device", "virtio-net-device,netdev=n0"]
    t0 = time.monotonic()
    errlog = open(os.path.join(tmp, f"{kind}.stderr"), "w")
    qemu = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errlog)
    pid1 = done = None
    probes, last = [], 0.0
    try:
        while time.monotonic() - t0 < 60 and done is None:
            now = time.monotonic()
            exited = qemu.poll() is not None  # looked at before the console: its last words count
            text = open(log, errors="replace").read()
            if pid1 is None and "Run /init" in text:
                pid1 = now - t0
            if kind == "trivial":
                if "trivial-init: reached" in text:
                    done = now - t0
            else:
                if now - last >= 0.02:
                    last = now
                    s = socket.socket()
                    s.setblocking(False)
                    try:
                        s.connect(("127.0.0.1", port))
                    except BlockingIOError:
                        pass
                    probes.append([s, False, b""])
                for p in probes:
                    try:
                        if not p[1]:
                            p[0].send(b"GET /health HTTP/1.0\r\n\r\n")
                            p[1] = True
                        p[2] += p[0].recv(4096)
                    except OSError:
                        pass
                    if p[2].startswith(b"HTTP/1.1 200") or p[2].startswith(b"HTTP/1.0 200"):
                        done = now - t0
            if exited:
                break
            time.sleep(0.002)
        if done is None or pid1 is None:
            err = open(os.path.join(tmp, f"{kind}.stderr")).read()
            raise SystemExit(f"bench-detect: {kind} did not finish\n{err}{open(log).read()[-2000:]}")
        guest = None
        if kind == "vminit":
            deadline = time.monotonic() + 10
            while guest is None and time.monotonic() < deadline:
                text = open(log, errors="replace").read()
                run = re.search(r"\[\s*([0-9.]+)\] Run /init", text)
                ready = re.search(r"\[\s*([0-9.]+)\] vminit INFO  ready", text)
                if run and ready:
                    guest = (float(ready.group(1)) - float(run.group(1))) * 1000
                time.sleep(0.05)
        return pid1 * 1000, (done - pid1) * 1000, guest
    finally:
        qemu.kill()
        qemu.wait()
        errlog.close()
        for p in probes:
            p[0].close()


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "qemu-harness"], check=True, cwd=ROOT)
    info = dict(l.split(None, 1) for l in sh(HARNESS, "fetch-kernel").splitlines() if " " in l)
    kernel = info["vmlinux"].strip()
    static = os.environ.get("VMINIT_STATIC_DIR",
                            os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release"))
    with tempfile.TemporaryDirectory() as tmp:
        imgs = {}
        for kind, init, modules in (("trivial", "trivial-init", "none"), ("vminit", "vminit", "virtio")):
            imgs[kind] = os.path.join(tmp, f"{kind}.cpio")
            sh(HARNESS, "initramfs", "--out", imgs[kind], "--init", os.path.join(static, init),
               "--modules", modules)
        rows = {"trivial": [], "vminit": []}
        print(f"{'run':>3} {'image':8} {'launch->PID 1':>14} {'PID 1->done (host)':>19} {'PID 1->ready (guest)':>21}")
        for i in range(runs):
            for kind in ("trivial", "vminit"):
                port = PORT + 2 * i + (kind == "vminit")
                pid1, after, guest = boot(kind, kernel, imgs[kind], tmp, port)
                rows[kind].append((pid1, after, guest))
                g = f"{guest:.0f}" if guest is not None else "-"
                print(f"{i + 1:>3} {kind:8} {pid1:14.0f} {after:19.0f} {g:>21}")
        med = lambda xs: statistics.median(xs)
        for kind in ("trivial", "vminit"):
            r = rows[kind]
            print(f"median {kind:8}: launch -> PID 1 {med([x[0] for x in r]):.0f} ms, "
                  f"PID 1 -> done {med([x[1] for x in r]):.0f} ms")
        v = rows["vminit"]
        gap = [x[1] - x[2] for x in v]
        print(f"median vminit PID 1 -> ready in the guest {med([x[2] for x in v]):.0f} ms; "
              f"host minus guest (detection path) {med(gap):.0f} ms "
              f"(range {min(gap):.0f}-{max(gap):.0f})")


if __name__ == "__main__":
    main()
