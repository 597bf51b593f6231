//! Signals against a real process: this test binary runs itself again as the child (the
//! ignored `child` test, selected by `IB_INTERRUPT_CHILD`), which installs the handlers,
//! runs a long command that the first signal must stop, then a cleanup command that later
//! signals must not stop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runner::{Cmd, RunError, Runner, SystemRunner};
use rustix::process::{kill_process, Pid, Signal};

const CHILD: &str = "IB_INTERRUPT_CHILD";

/// The child: work, interrupted; then cleanup in a cleanup scope, to its end.
#[test]
#[ignore = "the child process of the signal tests below"]
fn child() {
    let dir = PathBuf::from(std::env::var_os(CHILD).expect("run by the signal tests"));
    runner::interrupt::install().unwrap();
    let r = SystemRunner::new();
    std::fs::write(dir.join("started"), "").unwrap();
    let work = r.run(&Cmd::new("/bin/sleep").arg("30"));
    assert!(
        matches!(work, Err(RunError::Interrupted { .. })),
        "{work:?}"
    );
    runner::interrupt::clear();
    let _cleanup = runner::interrupt::cleanup();
    std::fs::write(dir.join("cleaning"), "").unwrap();
    let undo = r.run(&Cmd::new("/bin/sleep").arg("2"));
    let undo = match undo {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    std::fs::write(dir.join("cleaned"), undo).unwrap();
    std::process::exit(130);
}

struct Child {
    dir: tempfile::TempDir,
    proc: std::process::Child,
}

fn spawn_child() -> Child {
    let dir = tempfile::tempdir().unwrap();
    let proc = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "interrupt::child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Child { dir, proc }
}

fn wait_for(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Child {
    fn signal(&self, s: Signal) {
        let pid = Pid::from_raw(self.proc.id() as i32).unwrap();
        kill_process(pid, s).unwrap();
    }

    fn finish(self) -> (Option<i32>, String, Option<String>, Duration) {
        let t = Instant::now();
        let out = self.proc.wait_with_output().unwrap();
        let cleaned = std::fs::read_to_string(self.dir.path().join("cleaned")).ok();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            cleaned,
            t.elapsed(),
        )
    }
}

/// Each of SIGINT, SIGTERM and SIGHUP interrupts the work; a second signal during the
/// cleanup does not stop it.
#[test]
fn any_of_the_three_signals_interrupts_and_cleanup_survives_a_second() {
    for (first, second) in [
        (Signal::HUP, Signal::INT),
        (Signal::INT, Signal::TERM),
        (Signal::TERM, Signal::HUP),
    ] {
        let c = spawn_child();
        wait_for(&c.dir.path().join("started"));
        // The child may still be between writing the file and starting the command;
        // an interrupt then refuses the command, which the child asserts the same way.
        c.signal(first);
        wait_for(&c.dir.path().join("cleaning"));
        c.signal(second);
        let (code, err, cleaned, _) = c.finish();
        assert_eq!(code, Some(130), "{first:?} then {second:?}: {err}");
        assert_eq!(cleaned.as_deref(), Some("ok"), "{err}");
        assert!(
            err.contains("interrupting; cleanup runs to its end (2 more signals quit without it)"),
            "{err}"
        );
        assert!(
            err.contains("cleanup is still running; 1 more signal quits without it"),
            "{err}"
        );
    }
}

/// The third signal quits at once, without waiting for the cleanup command.
#[test]
fn the_third_signal_force_quits() {
    let c = spawn_child();
    wait_for(&c.dir.path().join("started"));
    c.signal(Signal::INT);
    wait_for(&c.dir.path().join("cleaning"));
    c.signal(Signal::INT);
    std::thread::sleep(Duration::from_millis(100));
    c.signal(Signal::INT);
    let (code, err, cleaned, waited) = c.finish();
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(cleaned, None, "cleanup must not have finished: {err}");
    assert!(
        err.contains("SIGINT: quitting now, without finishing cleanup"),
        "{err}"
    );
    assert!(waited < Duration::from_millis(1500), "took {waited:?}");
}
