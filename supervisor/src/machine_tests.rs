//! The state machine under a fake clock: `t(ms)` is an instant `ms` after a fixed origin.

use std::sync::OnceLock;

use super::*;

fn t(ms: u64) -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now) + Duration::from_millis(ms)
}

fn cfg(extra: &str) -> ServiceConfig {
    toml::from_str(&format!("command = [\"x\"]\n{extra}")).unwrap()
}

fn machine(extra: &str) -> Machine {
    Machine::new(&cfg(extra))
}

const CRASH: ExitStatus = ExitStatus::Code(1);
const SUCCESS: ExitStatus = ExitStatus::Code(0);

/// Starts (pid) at `at` and proves ready.
fn start_ready(m: &mut Machine, pid: i32, at: u64) {
    assert_eq!(m.deps_ready().or(m.tick(t(at))), Some(Action::Spawn));
    m.spawned(pid, t(at));
    m.ready();
}

#[test]
fn waiting_then_running_then_ready() {
    let mut m = machine("");
    assert_eq!(m.state().as_str(), "waiting");
    assert!(m.deadline().is_none());
    assert_eq!(m.deps_ready(), Some(Action::Spawn));
    m.spawned(10, t(0));
    assert_eq!(m.state().as_str(), "running");
    assert!(!m.counts_as_ready());
    assert_eq!(m.deadline(), Some(t(30_000)));
    m.ready();
    assert_eq!(m.state().as_str(), "ready");
    assert!(m.counts_as_ready() && m.ever_ready());
    assert_eq!(m.main_pid(), Some(10));
    assert!(m.deadline().is_none());
    assert_eq!(m.restarts(), 0);
}

#[test]
fn crash_backs_off_exponentially_with_a_cap() {
    let mut m = machine(
        r#"backoff = { initial = "100ms", max = "350ms" }
        restart_limit = { burst = 10, interval = "60s" }"#,
    );
    start_ready(&mut m, 1, 0);
    let mut now = 0;
    for (i, want) in [100u64, 200, 350, 350].iter().enumerate() {
        now += 10;
        assert!(m.exited(1, CRASH, t(now)));
        assert_eq!(m.state().as_str(), "backoff");
        assert_eq!(m.next_retry(), Some(t(now + want)), "crash {i}");
        assert_eq!(m.tick(t(now + want - 1)), None);
        now += want;
        assert_eq!(m.tick(t(now)), Some(Action::Spawn));
        m.spawned(1, t(now));
    }
    assert_eq!(m.failures(), 4);
    assert_eq!(m.restarts(), 4);
    assert_eq!(m.last_exit(), Some(&LastExit::Code(1)));
}

#[test]
fn a_stable_run_resets_the_backoff() {
    let mut m = machine(r#"backoff = { initial = "100ms", max = "10s" }"#);
    start_ready(&mut m, 1, 0);
    m.exited(1, CRASH, t(10));
    assert_eq!(m.next_retry(), Some(t(110)));
    m.tick(t(110));
    m.spawned(2, t(110));
    m.exited(2, CRASH, t(120));
    assert_eq!(m.next_retry(), Some(t(320)), "second crash doubles");
    m.tick(t(320));
    m.spawned(3, t(320));
    let late = 320 + STABLE_RUN.as_millis() as u64;
    m.exited(3, CRASH, t(late));
    assert_eq!(m.next_retry(), Some(t(late + 100)), "back to initial");
}

#[test]
fn more_than_burst_crashes_within_interval_is_failed() {
    let mut m = machine(
        r#"restart_limit = { burst = 2, interval = "10s" }
        backoff = { initial = "10ms", max = "10ms" }"#,
    );
    start_ready(&mut m, 1, 0);
    assert_eq!(m.budget_left(t(0)), 2);
    m.exited(1, CRASH, t(100));
    assert_eq!(m.budget_left(t(100)), 1);
    m.tick(t(110));
    m.spawned(2, t(110));
    m.exited(2, ExitStatus::Signal(libc::SIGSEGV), t(200));
    assert_eq!(m.budget_left(t(200)), 0);
    assert_eq!(m.state().as_str(), "backoff");
    m.tick(t(210));
    m.spawned(3, t(210));
    m.exited(3, CRASH, t(300));
    assert_eq!(m.state().as_str(), "failed");
    assert!(m.next_retry().is_none() && m.deadline().is_none());
    assert_eq!(m.tick(t(100_000)), None, "no more restarts");
    assert_eq!(m.failures(), 3);
}

#[test]
fn crashes_outside_the_interval_leave_the_window() {
    let mut m = machine(
        r#"restart_limit = { burst = 1, interval = "1s" }
        backoff = { initial = "10ms", max = "10ms" }"#,
    );
    start_ready(&mut m, 1, 0);
    let mut now = 0;
    for pid in 2..6 {
        now += 2000;
        m.exited(pid - 1, CRASH, t(now));
        assert_eq!(m.state().as_str(), "backoff", "crash at {now}");
        now += 10;
        m.tick(t(now));
        m.spawned(pid, t(now));
    }
    assert_eq!(m.budget_left(t(now)), 0);
    assert_eq!(m.budget_left(t(now + 2000)), 1);
    m.exited(5, CRASH, t(now + 100));
    assert_eq!(m.state().as_str(), "failed");
}

#[test]
fn idle_exit_under_always_restarts_without_counting_and_stays_ready() {
    let mut m = machine(r#"restart = "always""#);
    start_ready(&mut m, 1, 0);
    assert!(m.exited(1, SUCCESS, t(60_000)));
    assert_eq!(m.state().as_str(), "starting");
    assert!(m.counts_as_ready());
    assert_eq!(m.failures(), 0);
    assert_eq!(m.next_retry(), Some(t(60_000) + IDLE_RESTART_DELAY));
    assert_eq!(m.tick(t(60_100)), Some(Action::Spawn));
    m.spawned(2, t(60_100));
    assert_eq!(m.state().as_str(), "running");
    assert!(m.counts_as_ready(), "ready-equivalent until proven again");
    m.ready();
    assert_eq!(m.state().as_str(), "ready");
    assert_eq!((m.restarts(), m.failures()), (1, 0));
    assert_eq!(m.budget_left(t(60_200)), 5);
}

#[test]
fn quick_success_exits_back_off_without_counting() {
    let mut m = machine(
        r#"restart = "always"
        backoff = { initial = "200ms", max = "800ms" }"#,
    );
    let mut now = 0;
    for (pid, want) in [(1, 200u64), (2, 400), (3, 800), (4, 800)] {
        assert_eq!(m.deps_ready().or(m.tick(t(now))), Some(Action::Spawn));
        m.spawned(pid, t(now));
        now += 10;
        m.exited(pid, SUCCESS, t(now));
        assert_eq!(
            m.next_retry(),
            Some(t(now + want)),
            "quick exit of pid {pid}"
        );
        now += want;
    }
    assert_eq!(m.failures(), 0);
    // A run past QUICK_EXIT is an idle exit again: the short fixed delay.
    m.tick(t(now));
    m.spawned(5, t(now));
    now += QUICK_EXIT.as_millis() as u64;
    m.exited(5, SUCCESS, t(now));
    assert_eq!(m.next_retry(), Some(t(now) + IDLE_RESTART_DELAY));
}

#[test]
fn a_crash_ends_the_ready_equivalence() {
    let mut m = machine(r#"restart = "always""#);
    start_ready(&mut m, 1, 0);
    m.exited(1, SUCCESS, t(5000));
    assert_eq!(m.tick(t(5100)), Some(Action::Spawn));
    m.spawned(2, t(5100));
    m.exited(2, CRASH, t(5200));
    assert!(!m.counts_as_ready());
    assert_eq!(m.state().as_str(), "backoff");
}

#[test]
fn success_without_always_is_exited_and_counts_as_ready() {
    for restart in ["never", "on-failure"] {
        let mut m = machine(&format!("restart = \"{restart}\""));
        assert_eq!(m.deps_ready(), Some(Action::Spawn));
        m.spawned(1, t(0));
        m.exited(1, SUCCESS, t(5));
        assert_eq!(m.state().as_str(), "exited", "{restart}");
        assert!(m.counts_as_ready() && m.ever_ready() && m.is_down());
        assert_eq!(m.tick(t(100_000)), None);
    }
}

#[test]
fn success_exit_codes_are_configurable() {
    let mut m = machine("success_exit = [0, 3]");
    start_ready(&mut m, 1, 0);
    m.exited(1, ExitStatus::Code(3), t(5));
    assert_eq!(m.state().as_str(), "exited");
    let mut m = machine("success_exit = [3]");
    start_ready(&mut m, 1, 0);
    m.exited(1, SUCCESS, t(5));
    assert_eq!(m.state().as_str(), "backoff");
}

#[test]
fn never_fails_on_the_first_crash() {
    let mut m = machine(r#"restart = "never""#);
    start_ready(&mut m, 1, 0);
    m.exited(1, ExitStatus::Signal(libc::SIGKILL), t(5));
    assert_eq!(m.state().as_str(), "failed");
    assert_eq!(m.last_exit(), Some(&LastExit::Signal("SIGKILL".into())));
}

#[test]
fn missed_ready_timeout_is_a_crash_that_kills_the_group() {
    let mut m = machine(
        r#"ready_timeout = "2s"
        backoff = { initial = "1s", max = "1s" }"#,
    );
    m.deps_ready();
    m.spawned(7, t(0));
    assert_eq!(m.tick(t(1999)), None);
    assert_eq!(
        m.tick(t(2000)),
        Some(Action::KillGroup {
            pid: 7,
            signal: libc::SIGKILL
        })
    );
    assert_eq!(m.state().as_str(), "backoff");
    assert_eq!(m.failures(), 1);
    assert_eq!(m.last_exit(), Some(&LastExit::ReadyTimeout("2s".into())));
    // The restart waits for the killed process to be reaped, without a deadline to spin on.
    assert!(m.deadline().is_none() && !m.is_down() && m.owns(7));
    assert_eq!(m.tick(t(5000)), None);
    assert!(m.exited(7, ExitStatus::Signal(libc::SIGKILL), t(5000)));
    assert_eq!(m.failures(), 1, "the kill's exit is not a second crash");
    assert_eq!(m.tick(t(5000)), Some(Action::Spawn));
}

#[test]
fn spawn_failure_is_a_crash_with_its_reason() {
    let mut m = machine("");
    m.deps_ready();
    m.spawn_failed("/x: No such file or directory".into(), t(0));
    assert_eq!(m.state().as_str(), "backoff");
    assert_eq!(m.failures(), 1);
    assert!(matches!(m.last_exit(), Some(LastExit::SpawnError(e)) if e.contains("/x")));
    assert_eq!(m.tick(t(250)), Some(Action::Spawn));
    m.spawn_failed("again".into(), t(250));
    assert_eq!((m.restarts(), m.failures()), (1, 2));
}

#[test]
fn foreign_pids_are_not_ours() {
    let mut m = machine("");
    start_ready(&mut m, 1, 0);
    assert!(!m.exited(99, CRASH, t(5)));
    assert_eq!(m.state().as_str(), "ready");
    assert!(
        m.exited(1, ExitStatus::NotExited, t(5)),
        "still ours, still alive"
    );
    assert_eq!(m.state().as_str(), "ready");
}

#[test]
fn stop_sends_the_signal_then_sigkill_after_the_timeout() {
    let mut m = machine(
        r#"stop_signal = "SIGINT"
        stop_timeout = "3s""#,
    );
    start_ready(&mut m, 4, 0);
    m.begin_shutdown();
    assert_eq!(m.state().as_str(), "ready");
    assert_eq!(
        m.stop(t(100)),
        Some(Action::KillGroup {
            pid: 4,
            signal: libc::SIGINT
        })
    );
    assert!(m.is_stopping() && !m.is_down());
    assert_eq!(m.deadline(), Some(t(3100)));
    assert_eq!(m.tick(t(3099)), None);
    assert_eq!(
        m.tick(t(3100)),
        Some(Action::KillGroup {
            pid: 4,
            signal: libc::SIGKILL
        })
    );
    assert!(m.deadline().is_none());
    assert!(m.exited(4, ExitStatus::Signal(libc::SIGKILL), t(3200)));
    assert_eq!(m.state().as_str(), "stopped");
    assert!(m.is_down());
}

#[test]
fn shutdown_cancels_restarts_and_waiting() {
    let mut waiting = machine("");
    waiting.begin_shutdown();
    assert_eq!(waiting.state().as_str(), "stopped");
    assert_eq!(waiting.deps_ready(), None);

    let mut backoff = machine("");
    start_ready(&mut backoff, 1, 0);
    backoff.exited(1, CRASH, t(10));
    backoff.begin_shutdown();
    assert_eq!(backoff.state().as_str(), "stopped");
    assert_eq!(backoff.tick(t(100_000)), None);

    let mut exited_while_up = machine(r#"restart = "always""#);
    start_ready(&mut exited_while_up, 1, 0);
    exited_while_up.begin_shutdown();
    exited_while_up.exited(1, SUCCESS, t(10));
    assert_eq!(exited_while_up.state().as_str(), "stopped");

    let mut failed = machine(r#"restart = "never""#);
    start_ready(&mut failed, 1, 0);
    failed.exited(1, CRASH, t(1));
    failed.begin_shutdown();
    assert_eq!(failed.state().as_str(), "failed");
    assert!(failed.is_down());
}

#[test]
fn shutdown_waits_for_a_process_killed_for_readiness() {
    let mut m = machine(r#"ready_timeout = "1s""#);
    m.deps_ready();
    m.spawned(3, t(0));
    m.tick(t(1000));
    m.begin_shutdown();
    assert!(!m.is_down());
    assert!(m.exited(3, ExitStatus::Signal(9), t(1100)));
    assert!(m.is_down());
    assert_eq!(m.state().as_str(), "stopped");
}

#[test]
fn durations_print_for_operators() {
    assert_eq!(fmt_duration(Duration::from_secs(30)), "30s");
    assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
    assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
}

/// A config whose every duration is `d`, set on the parsed value: the config layer refuses
/// more than 365 days, and the machine must not rely on that.
fn absurd(d: Duration) -> Machine {
    let mut c = cfg(r#"restart = "always""#);
    let d = guest_config::duration::Dur(d);
    c.ready_timeout = d;
    c.stop_timeout = d;
    c.backoff.initial = d;
    c.backoff.max = d;
    c.restart_limit.interval = d;
    Machine::new(&c)
}

const ABSURD: [Duration; 3] = [
    Duration::MAX,
    Duration::from_secs(u64::MAX),
    // "9999999999999999h", as the duration parser saturates it.
    Duration::from_secs(9_999_999_999_999_999u64.saturating_mul(3600)),
];

#[test]
fn absurd_ready_timeout_is_a_far_deadline_not_a_panic() {
    for d in ABSURD {
        let mut m = absurd(d);
        m.deps_ready();
        m.spawned(5, t(0));
        assert_eq!(m.deadline(), Some(t(0) + MAX_DELAY), "{d:?}");
        assert_eq!(m.tick(t(1_000_000)), None, "not missed after 1000 s");
        assert_eq!(m.state().as_str(), "running");
    }
}

#[test]
fn absurd_backoff_and_interval_do_not_panic() {
    for d in ABSURD {
        let mut m = absurd(d);
        m.deps_ready();
        m.spawned(5, t(0));
        m.ready();
        // A crash: the delay is the clamped backoff, the budget window the clamped interval.
        assert!(m.exited(5, CRASH, t(10)));
        assert_eq!(m.next_retry(), Some(t(10) + MAX_DELAY), "{d:?}");
        assert_eq!(m.budget_left(t(20)), 4);
        assert_eq!(m.tick(t(20)), None);
        // Many crashes double the delay again and again: saturating, never past the cap.
        let mut m = absurd(d);
        for i in 0..40u64 {
            m.spawn_failed("no".into(), t(i));
        }
        assert_eq!(m.state().as_str(), "failed");
        // An idle exit under `always` after a quick run uses the same progression.
        let mut m = absurd(d);
        m.deps_ready();
        m.spawned(6, t(0));
        assert!(m.exited(6, SUCCESS, t(1)));
        assert_eq!(m.next_retry(), Some(t(1) + MAX_DELAY));
    }
}

#[test]
fn absurd_stop_timeout_is_capped_for_the_init_grace() {
    for d in ABSURD {
        let mut m = absurd(d);
        start_ready(&mut m, 8, 0);
        m.begin_shutdown();
        assert!(m.stop(t(5)).is_some());
        assert_eq!(m.deadline(), Some(t(5) + MAX_DELAY), "{d:?}");
        assert_eq!(m.stop_timeout(), MAX_DELAY);
        // The init adds a grace period to it: that must not overflow either.
        assert!(m
            .stop_timeout()
            .checked_add(Duration::from_secs(2))
            .is_some());
        assert!(t(5)
            .checked_add(m.stop_timeout() + Duration::from_secs(2))
            .is_some());
    }
}

#[test]
fn deadlines_past_the_clock_are_never() {
    assert_eq!(deadline_after(t(0), Duration::MAX), None);
    assert_eq!(deadline_after(t(0), Duration::from_secs(1)), Some(t(1000)));
}

#[test]
fn an_oom_kill_is_a_crash_named_as_such_and_restarted_with_backoff() {
    let mut m = machine("backoff = { initial = \"1s\", max = \"8s\" }");
    start_ready(&mut m, 10, 0);
    assert!(m.exited_with(10, ExitStatus::Signal(libc::SIGKILL), true, t(100)));
    assert_eq!(m.last_exit(), Some(&LastExit::OomKill(true)));
    assert_eq!(m.state(), ServiceState::Backoff);
    assert_eq!(m.failures(), 1);
    assert_eq!(m.next_retry(), Some(t(1_100)));
    // The second OOM kill backs off twice as long, like any crash.
    assert_eq!(m.tick(t(1_100)), Some(Action::Spawn));
    m.spawned(11, t(1_100));
    assert!(m.exited_with(11, ExitStatus::Code(137), true, t(1_200)));
    assert_eq!(m.last_exit(), Some(&LastExit::OomKill(true)));
    assert_eq!(m.next_retry(), Some(t(3_200)));
}

#[test]
fn a_success_exit_after_a_worker_was_oom_killed_stays_a_success() {
    let mut m = machine("restart = \"never\"");
    start_ready(&mut m, 10, 0);
    assert!(m.exited_with(10, SUCCESS, true, t(100)));
    assert_eq!(m.last_exit(), Some(&LastExit::Code(0)));
    assert_eq!(m.state(), ServiceState::Exited);
    assert_eq!(m.failures(), 0);
}
