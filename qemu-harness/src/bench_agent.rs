//! The boot benchmark's `--agent` variant (issue 18): both the busybox script and vminit start
//! the same agent (busybox `httpd` serving a file on port 8080) and wait for it before
//! `/health` answers 200, the script by polling it every 10 ms, vminit by its `http`
//! readiness probe. Agent readiness is then part of launch → first `/health` 200 for both.

use std::path::Path;

use crate::error::Result;
use crate::initramfs::Initramfs;

/// What the busybox script does besides [`crate::bench::BUSYBOX_INIT`]'s job, before it serves
/// the health file: start the agent, then poll it every 10 ms until it answers.
const AGENT_LINES: &str = "\
httpd -p 8080 -h /srv/agent
until wget -q -O /dev/null http://127.0.0.1:8080/health 2>/dev/null; do sleep 0.01; done
";

/// Where [`AGENT_LINES`] go in the script: before the health file is made.
const HEALTH_LINE: &str = "mkdir -p /www\n";

/// The busybox script's `/init` with the agent.
pub fn busybox_agent_init() -> String {
    crate::bench::BUSYBOX_INIT.replacen(HEALTH_LINE, &format!("{AGENT_LINES}{HEALTH_LINE}"), 1)
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_agent_lines_go_before_the_health_file() {
        let script = super::busybox_agent_init();
        let agent = script.find("httpd -p 8080").expect("agent started");
        let poll = script.find("until wget").expect("agent polled");
        let health = script.find("httpd -p 8900").expect("health served");
        assert!(agent < poll && poll < health, "{script}");
    }
}
