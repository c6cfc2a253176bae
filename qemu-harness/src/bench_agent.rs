//! The boot benchmark's `--agent` variant (issue 18): both the busybox script and vminit start
//! the same agent (busybox `httpd` serving a file on port 8080) and wait for it before
//! `/health` answers 200, the script by polling it every 10 ms, vminit by its `http`
//! readiness probe. Agent readiness is then part of launch → first `/health` 200 for both.

use std::path::Path;

use crate::error::Result;
use crate::initramfs::Initramfs;

/// The busybox script's `/init` with the agent: [`crate::bench::BUSYBOX_INIT`]'s job, then the
/// agent, a 10 ms poll until it answers, then the static health file.
pub const BUSYBOX_AGENT_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
modprobe virtio_pci
modprobe virtio_mmio
modprobe virtio_net
while [ ! -e /sys/class/net/eth0 ]; do sleep 0.01; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
httpd -p 8080 -h /srv/agent
until wget -q -O /dev/null http://127.0.0.1:8080/health 2>/dev/null; do sleep 0.01; done
mkdir -p /www
echo '{"status":"ok"}' > /www/health
httpd -p 8900 -h /www
echo "busybox-init: serving"
while true; do sleep 3600; done
"#;

/// vminit's image config with the same agent.
pub const VMINIT_AGENT_CONFIG: &str = r#"
[services.agent]
command = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/srv/agent"]
after = ["network"]
ready = { http = "http://127.0.0.1:8080/health" }
"#;

/// Adds what the agent serves to an image.
pub fn add_agent_files(img: &mut Initramfs) {
    img.file("/srv/agent/health", "ok\n", 0o644);
}

/// Adds the static busybox (the agent's binary) and the agent's config to vminit's image.
pub fn add_vminit_agent(img: &mut Initramfs, busybox: &Path) -> Result<()> {
    img.file_from("/bin/busybox", busybox, 0o755)?;
    add_agent_files(img);
    img.config(VMINIT_AGENT_CONFIG);
    Ok(())
}
