//! Host tests with real processes: the supervisor driven by `support/host_loop.rs` (not PID 1,
//! a child subreaper), running the `test-agent` binary.
//!
//! Needs the test agent built first: `cargo build -p test-agent` into the same target dir (it
//! is looked up next to this test binary, `<target>/debug/test-agent`), or `TEST_AGENT=/path`.
//! The loop reaps every child of this process, so the scenarios run one at a time under a
//! mutex even when cargo runs tests on several threads. Conditions are awaited with generous
//! deadlines; no test asserts timing.

#[cfg(test)]
#[path = "support/host_loop.rs"]
mod host_loop;

#[cfg(test)]
mod scenarios {

    use std::collections::BTreeMap;
    use std::io::{self, Write};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
    use std::time::Duration;

    use crate::host_loop::{become_subreaper, HostLoop};
    use guest_config::ServiceConfig;
    use nix::sys::wait::waitpid;
    use nix::unistd::Pid;
    use supervisor::{LastExit, Options, ServicesHealth, Supervisor};

    const LONG: Duration = Duration::from_secs(20);

    fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        static REAPER: OnceLock<()> = OnceLock::new();
        REAPER.get_or_init(|| become_subreaper().expect("prctl(PR_SET_CHILD_SUBREAPER)"));
        LOCK.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn agent() -> String {
        if let Ok(p) = std::env::var("TEST_AGENT") {
            return p;
        }
        let exe = std::env::current_exe().unwrap();
        let p = exe.parent().unwrap().parent().unwrap().join("test-agent");
        assert!(
            p.exists(),
            "{} missing: run `cargo build -p test-agent` first (or set TEST_AGENT)",
            p.display()
        );
        p.to_string_lossy().into_owned()
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// A service running the test agent: `args` after the agent path, `extra` TOML keys.
    fn svc(args: &[&str], extra: &str) -> ServiceConfig {
        let mut argv = vec![format!("{:?}", agent())];
        argv.extend(args.iter().map(|a| format!("{a:?}")));
        toml::from_str(&format!("command = [{}]\n{extra}", argv.join(", "))).unwrap()
    }

    struct Rig {
        lp: HostLoop,
        console: Capture,
        dir: tempfile::TempDir,
    }

    fn rig(services: Vec<(&str, ServiceConfig)>) -> Rig {
        rig_in(services, None)
    }

    /// A rig whose `passwd` and `group` are read from `etc`.
    fn rig_in(services: Vec<(&str, ServiceConfig)>, etc: Option<&std::path::Path>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let console = Capture::default();
        let mut opts = Options::new(Box::new(console.clone()));
        opts.notify_dir = dir.path().join("run");
        if let Some(etc) = etc {
            opts.etc_dir = etc.to_path_buf();
        }
        let map: BTreeMap<String, ServiceConfig> = services
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect();
        let mut lp = HostLoop::new(Supervisor::new(map, opts).unwrap()).unwrap();
        lp.start();
        Rig { lp, console, dir }
    }

    impl Rig {
        fn state(&self, name: &str) -> supervisor::ServiceStatus {
            self.lp.supervisor.snapshot(std::time::Instant::now())[name].clone()
        }
        fn wait(&mut self, what: &str, cond: impl Fn(&Rig) -> bool) {
            let end = std::time::Instant::now() + LONG;
            while !cond(self) {
                assert!(
                    std::time::Instant::now() < end,
                    "timed out waiting for {what}; console:\n{}",
                    self.console.text()
                );
                self.lp.turn().unwrap();
            }
        }
        fn wait_state(&mut self, name: &str, state: &str) {
            self.wait(&format!("{name} {state}"), |r| {
                r.state(name).state.as_str() == state
            });
        }
        fn status(&self) -> ServicesHealth {
            self.lp.supervisor.health(std::time::Instant::now())
        }
        /// Shuts down and waits for every process to be gone.
        fn stop(mut self) {
            self.lp.begin_shutdown();
            assert!(
                self.lp
                    .run_until(LONG, |l| l.supervisor.is_stopped())
                    .unwrap(),
                "services did not stop"
            );
        }
    }

    /// A failed scenario must not leave agents (some ignore SIGTERM) running.
    impl Drop for Rig {
        fn drop(&mut self) {
            if !self.lp.supervisor.is_stopped() {
                self.lp.begin_shutdown();
                let _ = self.lp.run_until(LONG, |l| l.supervisor.is_stopped());
            }
            for st in self
                .lp
                .supervisor
                .snapshot(std::time::Instant::now())
                .values()
            {
                if let Some(pid) = st.pid {
                    let _ = supervisor::spawn::kill_group(pid, libc::SIGKILL);
                }
            }
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn output_is_prefixed_line_by_line() {
        let _g = serial();
        let mut r = rig(vec![(
            "printer",
            svc(&["print", "--lines", "3"], r#"restart = "never""#),
        )]);
        r.wait_state("printer", "exited");
        r.wait("the last partial line", |r| {
            r.console.text().contains("no newline at exit")
        });
        let text = r.console.text();
        for want in [
            "[printer] line 0\n",
            "[printer] line 2\n",
            "[printer] to stderr\n",
            "[printer] no newline at exit\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(
            text.lines().all(|l| l.starts_with("[printer] ")),
            "unprefixed line in:\n{text}"
        );
        let longest = text.lines().map(str::len).max().unwrap();
        assert_eq!(
            longest,
            "[printer] ".len() + supervisor::output::MAX_LINE + supervisor::output::CUT_MARK.len(),
            "long line cut at the cap, marked"
        );
        assert_eq!(r.state("printer").last_exit, Some(LastExit::Code(0)));
        r.stop();
    }

    #[test]
    fn http_readiness() {
        let _g = serial();
        let port = free_port().to_string();
        let url = format!("http://127.0.0.1:{port}/health");
        let cfg = svc(
            &[
                "http",
                "--bind",
                "127.0.0.1",
                "--port",
                &port,
                "--ready-after",
                "600",
            ],
            &format!("ready = {{ http = {url:?} }}"),
        );
        let mut r = rig(vec![("web", cfg)]);
        assert_eq!(r.state("web").state.as_str(), "running");
        assert_eq!(r.status(), ServicesHealth::Starting);
        r.wait_state("web", "ready");
        assert_eq!(r.status(), ServicesHealth::Ready);
        assert_eq!(
            r.lp.supervisor.next_deadline(),
            None,
            "idle: nothing to wake up for"
        );
        r.stop();
    }

    #[test]
    fn tcp_readiness() {
        let _g = serial();
        let port = free_port().to_string();
        let cfg = svc(
            &["http", "--bind", "127.0.0.1", "--port", &port],
            &format!("ready = {{ tcp = \"127.0.0.1:{port}\" }}"),
        );
        let mut r = rig(vec![("tcp", cfg)]);
        r.wait_state("tcp", "ready");
        r.stop();
    }

    #[test]
    fn file_readiness() {
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("ready.flag");
        let f = flag.to_string_lossy().into_owned();
        let cfg = svc(
            &["touch", "--path", &f, "--after", "300"],
            &format!("ready = {{ file = {f:?} }}"),
        );
        let mut r = rig(vec![("touch", cfg)]);
        assert_eq!(r.state("touch").state.as_str(), "running");
        r.wait_state("touch", "ready");
        assert!(flag.exists());
        r.stop();
    }

    #[test]
    fn notify_readiness() {
        let _g = serial();
        let mut r = rig(vec![(
            "n",
            svc(&["notify", "--after", "200"], r#"ready = "notify""#),
        )]);
        assert_eq!(r.state("n").state.as_str(), "running");
        r.wait_state("n", "ready");
        assert_eq!(r.state("n").notify_status.as_deref(), Some("serving"));
        assert!(r.dir.path().join("run/n.notify").exists());
        r.stop();
    }

    #[test]
    fn a_notify_flood_leaves_other_services_responsive() {
        let _g = serial();
        let mut r = rig(vec![
            (
                "flood",
                svc(&["notify-flood", "--foreign", "1"], r#"ready = "notify""#),
            ),
            (
                "n",
                svc(
                    &["notify", "--after", "300"],
                    "ready = \"notify\"\nafter = [\"flood\"]",
                ),
            ),
            (
                "printer",
                svc(&["print", "--lines", "2"], r#"restart = "never""#),
            ),
        ]);
        r.wait_state("flood", "ready");
        r.wait("the flood's own status", |r| {
            r.state("flood")
                .notify_status
                .is_some_and(|s| s.starts_with("flood "))
        });
        r.wait_state("n", "ready");
        r.wait("output while flooded", |r| {
            r.console.text().contains("[printer] no newline at exit")
        });
        // The flood goes on: its status keeps changing, so the loop keeps reading it.
        let seen = r.state("flood").notify_status;
        r.wait("more of the flood", |r| {
            r.state("flood").notify_status != seen
        });
        r.stop();
    }

    #[test]
    fn exec_readiness_and_ready_timeout() {
        let _g = serial();
        let a = agent();
        let ok = svc(
            &["ignore-term"],
            &format!(
            "ready = {{ exec = [{a:?}, \"crash\", \"--code\", \"0\"] }}\nstop_signal = \"KILL\""
        ),
        );
        let never = svc(
            &["ignore-term"],
            &format!(
            "ready = {{ exec = [{a:?}, \"crash\", \"--code\", \"1\"] }}\nready_timeout = \"1s\"\n\
             stop_signal = \"KILL\"\nbackoff = {{ initial = \"5s\", max = \"5s\" }}"
        ),
        );
        let mut r = rig(vec![("ok", ok), ("never", never)]);
        r.wait_state("ok", "ready");
        r.wait_state("never", "backoff");
        let st = r.state("never");
        assert_eq!(st.failures, 1);
        assert_eq!(st.last_exit, Some(LastExit::ReadyTimeout("1s".into())));
        r.stop();
    }

    #[test]
    fn after_waits_for_readiness_and_the_network() {
        let _g = serial();
        let port = free_port().to_string();
        let url = format!("http://127.0.0.1:{port}/health");
        let first = svc(
            &[
                "http",
                "--bind",
                "127.0.0.1",
                "--port",
                &port,
                "--ready-after",
                "700",
            ],
            &format!("ready = {{ http = {url:?} }}"),
        );
        let second = svc(
            &["ignore-term"],
            "after = [\"first\"]\nstop_signal = \"KILL\"",
        );
        let net = svc(
            &["ignore-term"],
            "after = [\"network\", \"second\"]\nstop_signal = \"KILL\"",
        );
        let mut r = rig(vec![("first", first), ("second", second), ("net", net)]);
        assert_eq!(r.state("second").state.as_str(), "waiting");
        r.wait("first ready", |r| {
            let (f, s) = (r.state("first"), r.state("second"));
            assert!(
                f.state.as_str() == "ready" || s.pid.is_none(),
                "second started before first was ready"
            );
            f.state.as_str() == "ready"
        });
        r.wait_state("second", "ready");
        for _ in 0..10 {
            r.lp.turn().unwrap();
        }
        assert_eq!(
            r.state("net").state.as_str(),
            "waiting",
            "started without the network"
        );
        r.lp.set_network_up(true);
        r.wait_state("net", "ready");
        r.stop();
    }

    #[test]
    fn crash_budget_ends_in_failed_while_others_stay_ready() {
        let _g = serial();
        let crasher = svc(
        &["crash", "--after", "0", "--code", "3"],
        "restart_limit = { burst = 2, interval = \"60s\" }\nbackoff = { initial = \"50ms\", max = \"100ms\" }\nrequired = false",
    );
        let steady = svc(&["ignore-term"], "stop_signal = \"KILL\"");
        let mut r = rig(vec![("crasher", crasher), ("steady", steady)]);
        r.wait_state("crasher", "failed");
        let st = r.state("crasher");
        assert_eq!((st.failures, st.restarts, st.budget_left), (3, 2, 0));
        assert_eq!(st.last_exit, Some(LastExit::Code(3)));
        assert_eq!(st.pid, None);
        assert!(r.console.text().contains("[crasher] crashing with code 3"));
        for _ in 0..20 {
            r.lp.turn().unwrap();
        }
        assert_eq!(r.state("crasher").restarts, 2, "no restart after failed");
        assert_eq!(r.state("steady").state.as_str(), "ready");
        assert_eq!(r.status(), ServicesHealth::Troubled);
        r.stop();
    }

    #[test]
    fn idle_exits_restart_without_failures_and_health_stays_ok() {
        let _g = serial();
        let mut r = rig(vec![(
            "rtc",
            svc(&["exit", "--after", "1100"], r#"restart = "always""#),
        )]);
        r.wait("ok", |r| r.status() == ServicesHealth::Ready);
        r.wait("two idle restarts", |r| {
            assert_eq!(
                r.status(),
                ServicesHealth::Ready,
                "health flapped: {:?}",
                r.state("rtc")
            );
            r.state("rtc").restarts >= 2
        });
        let st = r.state("rtc");
        assert_eq!((st.failures, st.budget_left), (0, 5));
        r.stop();
    }

    #[test]
    fn shutdown_is_ordered_and_escalates_to_sigkill() {
        let _g = serial();
        let base = svc(&["exit", "--after", "60000"], "");
        let stubborn = svc(
            &["ignore-term"],
            "after = [\"base\"]\nstop_timeout = \"500ms\"",
        );
        let mut r = rig(vec![("base", base), ("stubborn", stubborn)]);
        r.wait_state("stubborn", "ready");
        // `started` readiness comes before the agent has set SIGTERM to ignored.
        r.wait("SIGTERM ignored", |r| {
            r.console.text().contains("[stubborn] ignoring SIGTERM")
        });
        r.lp.begin_shutdown();
        r.wait("stubborn stopped", |r| {
            let (b, s) = (r.state("base"), r.state("stubborn"));
            if s.state.as_str() != "stopped" {
                assert!(
                    b.pid.is_some() && !b.stopping,
                    "base stopped before its dependent: {b:?}"
                );
            }
            s.state.as_str() == "stopped"
        });
        assert_eq!(
            r.state("stubborn").last_exit,
            Some(LastExit::Signal("SIGKILL".into()))
        );
        r.wait_state("base", "stopped");
        assert_eq!(
            r.state("base").last_exit,
            Some(LastExit::Signal("SIGTERM".into()))
        );
        assert!(r.lp.supervisor.is_stopped());
    }

    /// The init's loop may reap a service (SIGCHLD) before it reads the service's pipe: the
    /// last line written before the exit must still be on the console when the exit is
    /// reported and the supervisor says it is stopped. Reproduced exactly: wait for the
    /// process to be a zombie without turning the loop, reap it, hand the exit over, look.
    #[test]
    fn the_last_line_before_a_stop_is_never_lost() {
        let _g = serial();
        for round in 0..20 {
            let mut r = rig(vec![("t", svc(&["term-last-line"], ""))]);
            r.wait("the TERM handler", |r| {
                r.console.text().contains("[t] armed")
            });
            let pid = r.state("t").pid.unwrap();
            r.lp.begin_shutdown();
            let stat = format!("/proc/{pid}/stat");
            let end = std::time::Instant::now() + LONG;
            loop {
                let s = std::fs::read_to_string(&stat).unwrap_or_default();
                if s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                {
                    break;
                }
                assert!(
                    std::time::Instant::now() < end,
                    "round {round}: {pid} did not exit"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let st = waitpid(Pid::from_raw(pid), None).unwrap();
            let now = std::time::Instant::now();
            let status = supervisor::ExitStatus::from_wait_status(st);
            let registry = r.lp.registry().try_clone().unwrap();
            assert!(r.lp.supervisor.on_exit(pid, status, now, &registry));
            assert!(r.lp.supervisor.is_stopped(), "round {round}");
            let text = r.console.text();
            assert!(
                text.contains("[t] GOT-TERM\n"),
                "round {round}: last line lost:\n{text}"
            );
            assert_eq!(r.state("t").last_exit, Some(LastExit::Code(0)));
        }
    }

    #[test]
    fn orphaned_grandchildren_are_reaped() {
        let _g = serial();
        let mut r = rig(vec![(
            "orph",
            svc(
                &["orphans", "--count", "3", "--sleep", "300"],
                r#"restart = "never""#,
            ),
        )]);
        r.wait_state("orph", "exited");
        let pids: Vec<i32> = r
            .console
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix("[orph] orphan "))
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 3, "{}", r.console.text());
        r.wait("the orphans reaped", |r| {
            pids.iter().all(|p| r.lp.orphans_reaped.contains(p))
        });
        r.stop();
    }

    #[test]
    fn unstartable_commands_are_crashes_with_a_reason() {
        let _g = serial();
        let missing: ServiceConfig = toml::from_str("command = [\"/nonexistent/agent\"]\nbackoff = { initial = \"10ms\", max = \"10ms\" }\nrestart_limit = { burst = 1, interval = \"60s\" }").unwrap();
        let mut bad_user = svc(&["ignore-term"], "restart = \"never\"");
        bad_user.user = Some("no-such-user-here".into());
        let mut r = rig(vec![("missing", missing), ("baduser", bad_user)]);
        r.wait_state("missing", "failed");
        let st = r.state("missing");
        assert!(
            matches!(&st.last_exit, Some(LastExit::SpawnError(e)) if e.contains("/nonexistent/agent")),
            "{st:?}"
        );
        r.wait_state("baduser", "failed");
        let st = r.state("baduser");
        assert!(
            matches!(&st.last_exit, Some(LastExit::SpawnError(e)) if e.contains("no-such-user-here")),
            "{st:?}"
        );
        r.stop();
    }

    #[test]
    fn services_run_as_the_named_user() {
        let _g = serial();
        require_root();
        let etc = etc_with_svc("svc:x:4343:\nextra:x:4444:svc\n");
        let dir = tempfile::tempdir().unwrap();
        let console = Capture::default();
        let mut opts = Options::new(Box::new(console.clone()));
        opts.notify_dir = dir.path().join("run");
        opts.etc_dir = etc.path().to_path_buf();
        let mut cfg = svc(&["ignore-term"], "stop_signal = \"KILL\"");
        cfg.user = Some("svc".into());
        let mut lp =
            HostLoop::new(Supervisor::new(BTreeMap::from([("u".to_string(), cfg)]), opts).unwrap())
                .unwrap();
        lp.start();
        let pid = lp.supervisor.snapshot(std::time::Instant::now())["u"]
            .pid
            .unwrap();
        let status: PathBuf = format!("/proc/{pid}/status").into();
        let mut text = String::new();
        assert!(
            lp.run_until(LONG, |_| {
                text = std::fs::read_to_string(&status).unwrap_or_default();
                text.contains("Uid:\t4242")
            })
            .unwrap(),
            "{text}"
        );
        assert!(text.contains("Gid:\t4343"), "{text}");
        assert!(text.contains("Groups:\t4343 4444"), "{text}");
        lp.begin_shutdown();
        assert!(lp.run_until(LONG, |l| l.supervisor.is_stopped()).unwrap());
    }

    /// An `/etc` with the user `svc` (uid 4242, primary gid 4343) and `group` as given.
    fn etc_with_svc(group: &str) -> tempfile::TempDir {
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(
            etc.path().join("passwd"),
            "svc:x:4242:4343::/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(etc.path().join("group"), group).unwrap();
        etc
    }

    /// Changing uid needs root. Not root is a failure that says so, never a silent pass.
    fn require_root() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test needs root (it switches the service to another uid): run as root"
        );
    }

    /// `[name] Key:\tvalue` from a service that printed its /proc/self/status.
    fn status_field(console: &str, name: &str, key: &str) -> Option<String> {
        let prefix = format!("[{name}] {key}:");
        console
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string())
    }

    /// The harness plays an init that blocks and ignores signals (as vminit does): the
    /// service must start with an empty mask and nothing ignored. `/bin/cat` reads the
    /// status, since any Rust program (the test agent) ignores SIGPIPE itself at startup.
    #[test]
    fn services_start_with_default_signal_dispositions_and_mask() {
        use nix::sys::signal::{
            sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
        };
        let _g = serial();
        assert!(
            std::path::Path::new("/bin/cat").exists(),
            "this test runs /bin/cat as the service"
        );
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGUSR1);
        blocked.add(Signal::SIGTERM);
        let mut old_mask = SigSet::empty();
        // This thread's mask is what the forked child inherits.
        nix::sys::signal::pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&blocked),
            Some(&mut old_mask),
        )
        .unwrap();
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        let ignored = [Signal::SIGUSR2, Signal::SIGHUP, Signal::SIGINT];
        let old: Vec<SigAction> = ignored
            .iter()
            // SAFETY: SIG_IGN runs no code in this process; the old action is restored below.
            .map(|&s| unsafe { sigaction(s, &ignore) }.unwrap())
            .collect();
        let mut r = rig(vec![(
            "sig",
            toml::from_str(
                r#"command = ["/bin/cat", "/proc/self/status"]
restart = "never""#,
            )
            .unwrap(),
        )]);
        r.wait_state("sig", "exited");
        r.wait("its status", |r| r.console.text().contains("[sig] SigCgt:"));
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None).unwrap();
        for (s, a) in ignored.iter().zip(&old) {
            // SAFETY: puts back the action that was in place before this test.
            unsafe { sigaction(*s, a) }.unwrap();
        }
        let text = r.console.text();
        assert_eq!(
            status_field(&text, "sig", "SigBlk").as_deref(),
            Some("0000000000000000"),
            "{text}"
        );
        assert_eq!(
            status_field(&text, "sig", "SigIgn").as_deref(),
            Some("0000000000000000"),
            "{text}"
        );
        r.stop();
    }

    #[test]
    fn no_new_privileges_is_set_when_asked() {
        let _g = serial();
        let mut r = rig(vec![
            (
                "nnp",
                svc(
                    &["proc-status"],
                    "restart = \"never\"\nno_new_privileges = true",
                ),
            ),
            ("plain", svc(&["proc-status"], "restart = \"never\"")),
        ]);
        r.wait_state("nnp", "exited");
        r.wait_state("plain", "exited");
        r.wait("both statuses", |r| {
            let t = r.console.text();
            t.contains("[nnp] cwd ") && t.contains("[plain] cwd ")
        });
        let text = r.console.text();
        assert_eq!(
            status_field(&text, "nnp", "NoNewPrivs").as_deref(),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            status_field(&text, "plain", "NoNewPrivs").as_deref(),
            Some("0"),
            "{text}"
        );
        r.stop();
    }

    /// `workdir` is entered as the service's user: a directory only that user may enter
    /// works, one only root may enter fails as it would for that user.
    #[test]
    fn workdir_is_entered_after_the_user_switch() {
        use std::os::unix::fs::PermissionsExt;
        let _g = serial();
        require_root();
        let etc = etc_with_svc("svc:x:4343:\n");
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mine = base.path().join("svc-only");
        let roots = base.path().join("root-only");
        for d in [&mine, &roots] {
            std::fs::create_dir(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        std::os::unix::fs::chown(&mine, Some(4242), Some(4343)).unwrap();
        let service = |dir: &std::path::Path| {
            let mut c = svc(&["proc-status"], "restart = \"never\"");
            c.user = Some("svc".into());
            c.workdir = Some(dir.to_path_buf());
            c
        };
        let mut r = rig_in(
            vec![("mine", service(&mine)), ("roots", service(&roots))],
            Some(etc.path()),
        );
        r.wait_state("mine", "exited");
        r.wait("its cwd", |r| r.console.text().contains("[mine] cwd "));
        let text = r.console.text();
        assert!(
            text.contains(&format!("[mine] cwd {}\n", mine.display())),
            "{text}"
        );
        assert!(
            status_field(&text, "mine", "Uid").is_some_and(|u| u.starts_with("4242")),
            "{text}"
        );
        r.wait_state("roots", "failed");
        let st = r.state("roots");
        assert!(
            matches!(&st.last_exit, Some(LastExit::SpawnError(e))
                if e.contains("Permission denied") && e.contains("root-only")),
            "{st:?}"
        );
        assert!(!text.contains("[roots] cwd"), "{text}");
        r.stop();
    }
}
