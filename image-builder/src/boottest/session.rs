//! One boot test: start the VM with the image and its seed, log in on the serial console,
//! run the checklist, stop the VM. Whatever happens, the result is a [`Report`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runner::{Cmd, Runner, SystemRunner};

use super::checklist::Checklist;
use super::report::{BootResult, CheckResult, Outcome, Report};
use crate::vm::{Console, ConsoleError, QemuVm, RunOptions, VmSpec};

/// How to get from power-on to a shell prompt on the console.
#[derive(Debug, Clone)]
pub struct Login {
    /// Text the console shows when it wants a user name (`None`: the console goes
    /// straight to a shell).
    pub login_prompt: Option<String>,
    pub user: String,
    pub password: Option<String>,
    /// Text of the shell prompt.
    pub shell_prompt: String,
    pub boot_timeout: Duration,
}

impl Default for Login {
    /// An illumos console: `console login:`, root, then root's `# ` prompt.
    fn default() -> Self {
        Login {
            login_prompt: Some("login: ".into()),
            user: "root".into(),
            password: None,
            shell_prompt: "# ".into(),
            boot_timeout: Duration::from_secs(600),
        }
    }
}

/// Runs `list` on a console that shows a shell prompt. A check that times out is
/// interrupted with Ctrl-C so the next one gets a shell; once the console is gone (the VM
/// died or was stopped) the remaining checks are skipped.
pub fn run_checks(console: &mut Console, list: &Checklist, stop: &AtomicBool) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let mut dead: Option<String> = None;
    for c in &list.checks {
        let skipped = |why: &str| CheckResult {
            name: c.name.clone(),
            command: c.command.clone(),
            result: Outcome::Skipped,
            status: None,
            seconds: 0.0,
            output: String::new(),
            reason: Some(why.to_string()),
        };
        if stop.load(Ordering::SeqCst) {
            out.push(skipped("interrupted"));
            continue;
        }
        if let Some(why) = &dead {
            out.push(skipped(why));
            continue;
        }
        let start = Instant::now();
        tracing::info!("check {}: {}", c.name, c.command);
        let r = console.run(&c.command, c.timeout());
        let seconds = start.elapsed().as_secs_f64();
        let result = match r {
            Ok(o) => {
                let reason = c.expect.mismatch(o.status, &o.output);
                CheckResult {
                    name: c.name.clone(),
                    command: c.command.clone(),
                    result: if reason.is_some() {
                        Outcome::Fail
                    } else {
                        Outcome::Pass
                    },
                    status: Some(o.status),
                    seconds,
                    output: o.output,
                    reason,
                }
            }
            Err(ConsoleError::Timeout { tail, .. }) => {
                let _ = console.send(b"\x03\n");
                CheckResult {
                    name: c.name.clone(),
                    command: c.command.clone(),
                    result: Outcome::Timeout,
                    status: None,
                    seconds,
                    output: tail,
                    reason: Some(format!("did not finish within {}s", c.timeout)),
                }
            }
            Err(e) => {
                let why = if stop.load(Ordering::SeqCst) {
                    "interrupted".to_string()
                } else {
                    format!("console lost: {e}")
                };
                dead = Some(why.clone());
                CheckResult {
                    name: c.name.clone(),
                    command: c.command.clone(),
                    result: Outcome::Fail,
                    status: None,
                    seconds,
                    output: String::new(),
                    reason: Some(why),
                }
            }
        };
        tracing::info!("check {}: {}", c.name, result.result.as_str());
        out.push(result);
    }
    out
}

/// Runs `list` on this system, each command with `sh -c` (for a machine booted some other
/// way, or a test harness that already gives a shell with the image attached). Standard
/// error follows standard output in the recorded output.
pub fn run_checks_local(
    runner: &dyn Runner,
    list: &Checklist,
    stop: &AtomicBool,
) -> Vec<CheckResult> {
    list.checks
        .iter()
        .map(|c| {
            let mut r = CheckResult {
                name: c.name.clone(),
                command: c.command.clone(),
                result: Outcome::Skipped,
                status: None,
                seconds: 0.0,
                output: String::new(),
                reason: Some("interrupted".into()),
            };
            if stop.load(Ordering::SeqCst) {
                return r;
            }
            tracing::info!("check {}: {}", c.name, c.command);
            let start = Instant::now();
            let out = runner.output(
                &Cmd::new("/bin/sh")
                    .arg("-c")
                    .arg(&c.command)
                    .timeout(c.timeout()),
            );
            r.seconds = start.elapsed().as_secs_f64();
            match out {
                Ok(o) => {
                    r.output = format!("{}{}", o.stdout_str(), String::from_utf8_lossy(&o.stderr));
                    let status = o.code.unwrap_or(-1);
                    r.status = Some(status);
                    r.reason = c.expect.mismatch(status, &r.output);
                    r.result = if r.reason.is_some() {
                        Outcome::Fail
                    } else {
                        Outcome::Pass
                    };
                }
                Err(runner::RunError::Timeout { .. }) => {
                    r.result = Outcome::Timeout;
                    r.reason = Some(format!("did not finish within {}s", c.timeout));
                }
                Err(e) => {
                    r.result = Outcome::Fail;
                    r.reason = Some(e.to_string());
                }
            }
            tracing::info!("check {}: {}", c.name, r.result.as_str());
            r
        })
        .collect()
}

/// A report for checks run with [`run_checks_local`] on the system holding `image`.
pub fn local_report(
    image: &Path,
    runner: &dyn Runner,
    list: &Checklist,
    stop: &AtomicBool,
) -> Report {
    let checks = run_checks_local(runner, list, stop);
    let mut r = Report {
        image: image.to_path_buf(),
        instance_id: String::new(),
        boot: BootResult {
            result: Outcome::Pass,
            seconds: 0.0,
            reason: Some("not booted: the checks ran on the local system".into()),
        },
        checks,
        console_log: PathBuf::new(),
        interrupted: stop.load(Ordering::SeqCst),
        passed: false,
    };
    r.passed = r.compute_passed();
    r
}

/// Waits for the shell prompt, logging in first when the console asks for it. A timeout
/// names the whole boot time limit, not what was left of it for the last wait.
pub fn log_in(console: &mut Console, login: &Login) -> Result<(), ConsoleError> {
    let deadline = Instant::now() + login.boot_timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut steps = || -> Result<(), ConsoleError> {
        if let Some(p) = &login.login_prompt {
            console.wait_for(p, left())?;
            console.send_line(&login.user)?;
            if let Some(pw) = &login.password {
                console.wait_for("assword:", left())?;
                console.send_line(pw)?;
            }
        }
        console.wait_for(&login.shell_prompt, left())?;
        Ok(())
    };
    steps().map_err(|e| match e {
        ConsoleError::Timeout { pattern, tail, .. } => ConsoleError::Timeout {
            pattern,
            waited: login.boot_timeout,
            tail,
        },
        e => e,
    })
}

/// What a boot test needs besides the checklist.
pub struct TestRun<'a> {
    pub image: &'a Path,
    /// The VM with the image (and seed) attached.
    pub spec: VmSpec,
    pub run: RunOptions,
    pub login: Login,
    pub instance_id: String,
    /// Where the console transcript is kept.
    pub console_log: PathBuf,
}

/// Boots, runs the checks, and stops the VM. Setting `stop` (e.g. from SIGINT) stops the
/// VM at once; the report then says `interrupted`.
pub fn boot_and_check(
    t: TestRun<'_>,
    list: &Checklist,
    runner: &SystemRunner,
    stop: Arc<AtomicBool>,
) -> Report {
    let start = Instant::now();
    let mut report = Report {
        image: t.image.to_path_buf(),
        instance_id: t.instance_id.clone(),
        boot: BootResult {
            result: Outcome::Fail,
            seconds: 0.0,
            reason: None,
        },
        checks: Vec::new(),
        console_log: t.console_log.clone(),
        interrupted: false,
        passed: false,
    };
    let skip_all = |why: &str| -> Vec<CheckResult> {
        list.checks
            .iter()
            .map(|c| CheckResult {
                name: c.name.clone(),
                command: c.command.clone(),
                result: Outcome::Skipped,
                status: None,
                seconds: 0.0,
                output: String::new(),
                reason: Some(why.to_string()),
            })
            .collect()
    };
    let run = RunOptions {
        console_log: Some(t.console_log.clone()),
        ..t.run.clone()
    };
    let mut vm = match QemuVm::start(&t.spec, &run, runner) {
        Ok(vm) => vm,
        Err(e) => {
            report.boot.reason = Some(format!("the VM did not start: {e}"));
            report.checks = skip_all("the VM did not start");
            return report;
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch(vm.pid(), Arc::clone(&stop), Arc::clone(&done));
    match log_in(vm.console(), &t.login) {
        Ok(()) => {
            report.boot.result = Outcome::Pass;
            report.boot.seconds = start.elapsed().as_secs_f64();
            report.checks = run_checks(vm.console(), list, &stop);
        }
        Err(e) => {
            report.boot.seconds = start.elapsed().as_secs_f64();
            report.boot.result = match e {
                ConsoleError::Timeout { .. } => Outcome::Timeout,
                _ => Outcome::Fail,
            };
            report.boot.reason = Some(format!(
                "no shell prompt ({e}); the whole console is in {}",
                t.console_log.display()
            ));
            report.checks = skip_all("the guest never reached its prompt");
        }
    }
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    if let Err(e) = vm.stop() {
        tracing::warn!("stopping the VM: {e}");
    }
    report.interrupted = stop.load(Ordering::SeqCst);
    report.passed = report.compute_passed();
    report
}

/// Stops QEMU (SIGTERM to its pid) as soon as `stop` is set; the console then closes and
/// every wait in progress returns at once, so the run unwinds through its clean-up.
fn watch(pid: u32, stop: Arc<AtomicBool>, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !done.load(Ordering::SeqCst) {
            if stop.load(Ordering::SeqCst) {
                if let Some(p) = i32::try_from(pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};

    #[test]
    fn checks_on_a_real_shell_pass_fail_and_skip_when_stopped() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg("PS1='$ ' exec /bin/sh -i 2>&1")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(
                theirs.try_clone().unwrap(),
            )))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut c = Console::from_stream(ours).unwrap();
        let list = Checklist::parse(
            r#"{"checks":[
              {"name":"ok","command":"echo hello","expect":{"equals":"hello"}},
              {"name":"bad","command":"echo oops; exit_=1; (exit 3)","expect":{"contains":["fine"]}},
              {"name":"after","command":"echo still here","expect":{"contains":["still"]}}
            ]}"#,
        )
        .unwrap();
        let stop = AtomicBool::new(false);
        let r = run_checks(&mut c, &list, &stop);
        let got: Vec<_> = r
            .iter()
            .map(|c| (c.name.as_str(), c.result, c.status))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ok", Outcome::Pass, Some(0)),
                ("bad", Outcome::Fail, Some(3)),
                ("after", Outcome::Pass, Some(0)),
            ]
        );
        assert_eq!(r[1].output, "oops\n");
        assert_eq!(
            r[1].reason.as_deref(),
            Some("exit status 3, expected 0; output lacks \"fine\"")
        );
        stop.store(true, Ordering::SeqCst);
        let r = run_checks(&mut c, &list, &stop);
        assert!(r.iter().all(|c| c.result == Outcome::Skipped));
        c.send_line("exit").unwrap();
        c.wait_closed(Duration::from_secs(10)).unwrap();
        child.wait().unwrap();
    }
}
