//! `image-builder test` against a real QEMU guest (TCG): the small Linux guest that
//! `scripts/vm-guest setup` prepares, with the image under test as its first disk and the
//! tool's NoCloud seed as the second. Without the guest (or QEMU) these tests say they
//! are skipped, unless `IB_REQUIRE_GUESTS` is set: then they fail.

use crate::guest;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use guest::Guest;
use serde_json::Value;

fn guest(test: &str) -> Option<Guest> {
    guest::guest(test, &["ssh-keygen", "mcopy"])
}

/// The command line for a test of `image` on the guest; its temporary files go to `tmp`.
fn command(g: &Guest, work: &Path, image: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_image-builder"));
    c.current_dir(work)
        .arg("test")
        .arg(image)
        .args([
            "--no-login",
            "--firmware",
            "bios",
            "-m",
            "256",
            "--cpus",
            "1",
        ])
        .args(["--net", "none", "--accel", "tcg", "--report", "report"])
        .arg("--kernel")
        .arg(&g.vmlinux)
        .arg("--initrd")
        .arg(&g.initrd)
        .args(["--append", "console=ttyS0 panic=-1 quiet"])
        .args(extra)
        .env("TMPDIR", work.join("tmp"))
        .env_remove("XDG_RUNTIME_DIR")
        .env("NO_COLOR", "1");
    std::fs::create_dir_all(work.join("tmp")).unwrap();
    c
}

fn reports(work: &Path) -> (Vec<Value>, String) {
    let json = std::fs::read_to_string(work.join("report/report.json")).unwrap();
    let md = std::fs::read_to_string(work.join("report/report.md")).unwrap();
    (serde_json::from_str(&json).unwrap(), md)
}

/// Nothing of the run (seed, key, VM run directory) is left in its temporary directory.
fn assert_clean(work: &Path) {
    let left: Vec<_> = std::fs::read_dir(work.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn run(mut c: Command) -> Output {
    let out = c.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

const CHECKS: &str = r#"{"checks":[
  {"name":"data-disk","command":"dd if=/dev/vda bs=16 count=1 2>/dev/null","expect":{"equals":"image-under-test"}},
  {"name":"seed-label","command":"dd if=/dev/vdb bs=1 skip=43 count=11 2>/dev/null","expect":{"equals":"cidata"}},
  {"name":"seed-instance","command":"grep -a -o 'instance-id: iid-ib-test-[0-9-]*' /dev/vdb","expect":{"contains":["instance-id: iid-ib-test-"]}},
  {"name":"seed-key","command":"grep -a -o '^  - ssh-ed25519 [A-Za-z0-9+/=]*' /dev/vdb","expect":{"line_starts_with":"- ssh-ed25519 AAAA"}},
  {"name":"must-fail","command":"echo broken pool; exit_=1; (exit 4)","expect":{"contains":["healthy"]}},
  {"name":"too-slow","command":"sleep 600","timeout":3},
  {"name":"write-then-check","command":"echo scratch > /dev/vda && dd if=/dev/vda bs=8 count=1 2>/dev/null","expect":{"equals":"scratch"}}
]}"#;

#[test]
fn checklist_runs_on_a_booted_guest_and_reports_pass_and_fail() {
    let Some(g) = guest("checklist_runs_on_a_booted_guest_and_reports_pass_and_fail") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.raw");
    let mut data = b"image-under-test".to_vec();
    data.resize(4 << 20, 0);
    std::fs::write(&image, &data).unwrap();
    std::fs::write(work.path().join("checks.json"), CHECKS).unwrap();
    let out = run(command(
        &g,
        work.path(),
        &image,
        &["--check", "checks.json"],
    ));
    assert_eq!(out.status.code(), Some(1), "one check fails");
    let (json, md) = reports(work.path());
    assert_eq!(json.len(), 1);
    let r = &json[0];
    assert_eq!(r["image"], image.to_str().unwrap());
    assert_eq!(r["boot"]["result"], "pass");
    assert_eq!(r["passed"], false);
    let results: Vec<(&str, &str)> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        results,
        vec![
            ("data-disk", "pass"),
            ("seed-label", "pass"),
            ("seed-instance", "pass"),
            ("seed-key", "pass"),
            ("must-fail", "fail"),
            ("too-slow", "timeout"),
            ("write-then-check", "pass"),
        ]
    );
    let failed = &r["checks"][4];
    assert_eq!(failed["status"], 4);
    assert_eq!(failed["output"], "broken pool\n");
    assert_eq!(
        failed["reason"],
        "exit status 4, expected 0; output lacks \"healthy\""
    );
    let iid = r["instance_id"].as_str().unwrap();
    assert!(
        r["checks"][2]["output"].as_str().unwrap().contains(iid),
        "the seed carries this run's instance id {iid}"
    );
    // The timed-out command was interrupted and the next check still got a shell.
    assert_eq!(r["checks"][5]["reason"], "did not finish within 3s");
    assert!(md.contains(&format!("| {} | too-slow | timeout |", image.display())));
    let log = PathBuf::from(r["console_log"].as_str().unwrap());
    assert!(log.starts_with(work.path().join("report")));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("vm-guest: ready"));
    assert!(md.contains("| image | check | result | time | console log |"));
    assert!(md.contains(&format!("| {} | must-fail | fail |", image.display())));
    assert!(md.contains(&format!("| {} | seed-label | pass |", image.display())));
    assert!(md.contains("```\nbroken pool\n```"));
    // The image was attached with a throw-away overlay: the guest's write did not land.
    assert_eq!(&std::fs::read(&image).unwrap()[..16], b"image-under-test");
    assert_clean(work.path());
}

#[test]
fn a_guest_without_a_prompt_times_out_with_its_console_log() {
    let Some(g) = guest("a_guest_without_a_prompt_times_out_with_its_console_log") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.raw");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let list = r#"{"checks":[{"name":"never","command":"true"}]}"#;
    std::fs::write(work.path().join("c.json"), list).unwrap();
    let args = [
        "--check",
        "c.json",
        "--prompt",
        "no-such-prompt> ",
        "--boot-timeout",
        "25",
    ];
    let out = run(command(&g, work.path(), &image, &args));
    assert_eq!(out.status.code(), Some(1));
    let (json, md) = reports(work.path());
    let r = &json[0];
    assert_eq!(r["boot"]["result"], "timeout");
    assert_eq!(r["checks"][0]["result"], "skipped");
    let log = r["console_log"].as_str().unwrap();
    let reason = r["boot"]["reason"].as_str().unwrap();
    assert!(reason.contains(log), "{reason}");
    // The reason quotes the console's last output; the whole log is beside the report.
    assert!(
        reason.contains("no \"no-such-prompt> \" on the console within 25s"),
        "{reason}"
    );
    assert!(reason.contains("vm-guest: ready"), "{reason}");
    assert!(std::fs::read_to_string(log)
        .unwrap()
        .contains("vm-guest: ready"));
    assert!(md.contains(&format!("| {} | boot | timeout |", image.display())));
    assert!(
        md.contains(&format!(
            "### {} / boot\n\nno shell prompt",
            image.display()
        )),
        "{md}"
    );
    assert!(
        md.contains(&format!("the whole console is in {log}")),
        "{md}"
    );
    assert_clean(work.path());
}

fn qemu_processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline);
        if text.contains("qemu-system") && text.contains(needle) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn interrupt_stops_the_guest_and_leaves_nothing_behind() {
    let Some(g) = guest("interrupt_stops_the_guest_and_leaves_nothing_behind") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.raw");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let list = r#"{"checks":[{"name":"slow","command":"sleep 600","timeout":900}]}"#;
    std::fs::write(work.path().join("c.json"), list).unwrap();
    let mut child = command(&g, work.path(), &image, &["--check", "c.json"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = work.path().join("report/disk.console.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .map(|t| t.contains("sleep 600"))
        .unwrap_or(false)
    {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the check never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let needle = image.to_str().unwrap();
    assert_eq!(qemu_processes_mentioning(needle).len(), 1);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(qemu_processes_mentioning(needle).is_empty());
    let (json, _) = reports(work.path());
    assert_eq!(json[0]["interrupted"], true);
    assert_eq!(json[0]["passed"], false);
    assert_clean(work.path());
}
