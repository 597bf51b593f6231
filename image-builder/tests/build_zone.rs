//! `build --in-zone`: the zonecfg, zoneadm and zlogin command lines, pinned with the
//! recorder, including the teardown after a failed build, a failed install, a killed run
//! and a run that finds an earlier run's zone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use image_builder::buildzone::{inner_args, BuildZone, InZone, ZoneError, ZoneJournal, ZoneUndo};
use image_builder::host::Host;
use runner::{Output, Recorder, Reply};

const CFG: &str = "/usr/sbin/zonecfg -z ib1 'create -b; set zonepath=/zones/ib1; set brand=sparse; set autoboot=false; add dataset; set name=rpool/images; end; add fs; set dir=/opt/ib/bin; set special=/opt/ib/bin; set type=lofs; add options ro; end; add fs; set dir=/opt/ib/templates; set special=/opt/ib/templates; set type=lofs; add options ro; end; verify; commit'";
// zlogin(1) SYNOPSIS `zlogin [-inEQS] ... zonename utility [argument]...`, non-interactive
// mode, without -S: zlogin(1) says "safe" mode "should only be used to recover a damaged
// zone".
const SVCS: &str =
    "/usr/sbin/zlogin ib1 /usr/bin/svcs -H -o state svc:/milestone/multi-user:default";
/// zlogin hands its joined arguments to the zone's shell, so `my image` travels as the
/// argument `'my image'` (which the recorder's line quotes once more).
const BUILD: &str = r"/usr/sbin/zlogin ib1 /opt/ib/bin/image-builder build -d rpool/images -g g -n ''\''my image'\''' --no-vm";
const HALT: &str = "/usr/sbin/zoneadm -z ib1 halt";
const UNINSTALL: &str = "/usr/sbin/zoneadm -z ib1 uninstall -F";
const DELETE: &str = "/usr/sbin/zonecfg -z ib1 delete -F";

fn zone(zonepath: &Path) -> BuildZone {
    BuildZone {
        name: "ib1".into(),
        brand: "sparse".into(),
        zonepath: zonepath.to_path_buf(),
        dataset: "rpool/images".into(),
        mounts: vec!["/opt/ib/bin".into(), "/opt/ib/templates".into()],
    }
}

fn in_zone<'a>(rec: &'a Recorder, host: Host, state: &Path, zonepath: &Path) -> InZone<'a> {
    InZone {
        host,
        runner: rec,
        zone: zone(zonepath),
        state_dir: state.to_path_buf(),
        boot_wait: Duration::from_secs(5),
        poll: Duration::ZERO,
    }
}

fn args() -> Vec<String> {
    ["-d", "rpool/images", "-g", "g", "-n", "my image", "--no-vm"]
        .map(String::from)
        .to_vec()
}

/// The zone tools answer what a test does not script with success: zonecfg(8) in
/// command mode, zoneadm(8) install, boot, halt, uninstall and the build in the zone
/// exit 0, and their output is streamed or not read. Tests script failures with rules
/// added after these (rules answer in the order added), and pin every command line.
fn scripted() -> Recorder {
    let rec = Recorder::new().allow_unmatched();
    rec.always(
        "/usr/sbin/zoneadm list -cp",
        Output::ok("0:global:running:/::ipkg:shared\n"),
    );
    rec.always(SVCS, Output::ok("online\n"));
    rec
}

fn run(rec: &Recorder, state: &Path) -> Result<image_builder::buildzone::Finished, ZoneError> {
    in_zone(rec, Host::Illumos, state, Path::new("/zones/ib1")).run(
        Path::new("/opt/ib/bin/image-builder"),
        &args(),
        Path::new("/rpool/images/output"),
        Path::new(""),
    )
}

#[test]
fn a_build_creates_installs_boots_runs_and_removes_the_zone() {
    let state = tempfile::tempdir().unwrap();
    let rec = scripted();
    let f = run(&rec, state.path()).unwrap();
    assert_eq!(f.code, Some(0));
    assert!(f.teardown_failed.is_empty());
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zoneadm list -cp",
            CFG,
            "/usr/sbin/zoneadm -z ib1 install",
            "/usr/sbin/zoneadm -z ib1 boot",
            SVCS,
            BUILD,
            HALT,
            UNINSTALL,
            DELETE,
        ]
    );
    // The build's output is the user's: streamed, not captured.
    let build = rec
        .calls()
        .into_iter()
        .find(|c| c.display() == BUILD)
        .unwrap();
    assert!(build.is_passthrough());
    let words: Vec<String> = build
        .get_args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        words,
        [
            "ib1",
            "/opt/ib/bin/image-builder",
            "build",
            "-d",
            "rpool/images",
            "-g",
            "g",
            "-n",
            "'my image'",
            "--no-vm"
        ]
    );
    assert!(ZoneJournal::open(state.path(), "ib1").unwrap().is_empty());
}

#[test]
fn a_failed_build_still_removes_the_zone_and_keeps_its_exit_code() {
    let state = tempfile::tempdir().unwrap();
    let rec = scripted();
    rec.on(BUILD, Output::failed(3, "step 2 failed"));
    let f = run(&rec, state.path()).unwrap();
    assert_eq!(f.code, Some(3));
    assert_eq!(rec.lines()[5..], [BUILD, HALT, UNINSTALL, DELETE]);
}

#[test]
fn a_killed_build_still_removes_the_zone() {
    let state = tempfile::tempdir().unwrap();
    let rec = scripted();
    rec.on(BUILD, Reply::Timeout);
    let err = run(&rec, state.path()).unwrap_err();
    assert!(err.to_string().contains("did not finish"), "{err}");
    assert_eq!(rec.lines()[5..], [BUILD, HALT, UNINSTALL, DELETE]);
    assert!(ZoneJournal::open(state.path(), "ib1").unwrap().is_empty());
}

#[test]
fn a_failed_install_uninstalls_and_deletes_but_never_halts() {
    let state = tempfile::tempdir().unwrap();
    let rec = scripted();
    rec.on(
        "/usr/sbin/zoneadm -z ib1 install",
        Output::failed(255, "pkg: no publisher"),
    );
    let err = run(&rec, state.path()).unwrap_err();
    assert!(err.to_string().contains("pkg: no publisher"), "{err}");
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zoneadm list -cp",
            CFG,
            "/usr/sbin/zoneadm -z ib1 install",
            UNINSTALL,
            DELETE,
        ]
    );
}

#[test]
fn a_teardown_that_fails_stays_in_the_journal_and_the_next_run_finishes_it() {
    let state = tempfile::tempdir().unwrap();
    let rec = scripted();
    rec.on(UNINSTALL, Output::failed(1, "zone busy"));
    let f = run(&rec, state.path()).unwrap();
    assert_eq!(f.teardown_failed.len(), 1, "{:?}", f.teardown_failed);
    assert!(f.teardown_failed[0].contains("zone busy"));
    assert_eq!(
        ZoneJournal::open(state.path(), "ib1").unwrap().pending(),
        [ZoneUndo::Delete, ZoneUndo::Uninstall]
    );
    // The next run removes the left-over zone first, then starts afresh.
    rec.clear();
    run(&rec, state.path()).unwrap();
    assert_eq!(
        rec.lines()[..3],
        [UNINSTALL, DELETE, "/usr/sbin/zoneadm list -cp"]
    );
    assert!(ZoneJournal::open(state.path(), "ib1").unwrap().is_empty());
}

#[test]
fn a_running_zone_is_reused_and_left_running() {
    let state = tempfile::tempdir().unwrap();
    // The build in the zone exits 0 (its output is streamed); the test pins every line.
    let rec = Recorder::new().allow_unmatched();
    rec.always(
        "/usr/sbin/zoneadm list -cp",
        Output::ok("0:global:running:/::ipkg:shared\n3:ib1:running:/zones/ib1:8e9d:sparse:excl\n"),
    );
    rec.on(SVCS, Output::ok("offline*\n"));
    rec.always(SVCS, Output::ok("online\n"));
    run(&rec, state.path()).unwrap();
    assert_eq!(
        rec.lines(),
        ["/usr/sbin/zoneadm list -cp", SVCS, SVCS, BUILD]
    );
}

#[test]
fn an_installed_zone_of_that_name_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let rec = Recorder::new();
    rec.always(
        "/usr/sbin/zoneadm list -cp",
        Output::ok("-:ib1:installed:/zones/ib1:8e9d:sparse:excl\n"),
    );
    let err = run(&rec, state.path()).unwrap_err();
    assert!(
        err.to_string().contains("exists in state installed"),
        "{err}"
    );
    assert_eq!(rec.lines(), ["/usr/sbin/zoneadm list -cp"]);
}

#[test]
fn only_illumos_runs_zones_and_nothing_starts_elsewhere() {
    let state = tempfile::tempdir().unwrap();
    let rec = scripted();
    let err = in_zone(&rec, Host::Linux, state.path(), Path::new("/zones/ib1"))
        .run(
            Path::new("/opt/ib/bin/image-builder"),
            &args(),
            Path::new("/rpool/images/output"),
            Path::new(""),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--in-zone needs an illumos host with zones; this is a Linux host"
    );
    assert!(rec.lines().is_empty());
}

#[test]
fn unsafe_names_never_reach_zonecfg() {
    let state = tempfile::tempdir().unwrap();
    let rec = scripted();
    let mut z = in_zone(&rec, Host::Illumos, state.path(), Path::new("/zones/ib1"));
    z.zone.dataset = "rpool/images; add fs".into();
    let err = z
        .run(Path::new("/x"), &args(), Path::new("/o"), Path::new(""))
        .unwrap_err();
    assert!(err.to_string().contains("invalid build zone"), "{err}");
    z.zone.dataset = "rpool/images".into();
    z.zone.name = "global".into();
    assert!(z.zone.validate().is_err());
    // libzonecfg's limit: 63 characters (ZONENAME_MAX counts the NUL).
    z.zone.name = "z".repeat(64);
    assert!(z.zone.validate().is_err());
    z.zone.name = "z".repeat(63);
    assert!(z.zone.validate().is_ok());
    z.zone.name = "ib1".into();
    z.zone.mounts = vec![PathBuf::from("/")];
    assert!(z.zone.validate().is_err());
    assert!(rec.lines().is_empty());
}

#[test]
fn outputs_are_copied_out_of_the_zone_without_following_links_out() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zonepath = dir.path().join("zp");
    let out_in_zone = zonepath.join("root/rpool/images/output");
    std::fs::create_dir_all(out_in_zone.join(".image-builder")).unwrap();
    std::fs::write(out_in_zone.join("g-z.zone.tar"), b"tar bytes").unwrap();
    std::fs::write(out_in_zone.join("SHA256SUMS"), b"sums").unwrap();
    // A link planted in the zone, aimed at a file outside the zone root.
    let sentinel = dir.path().join("outside-secret");
    std::fs::write(&sentinel, b"global zone data").unwrap();
    std::os::unix::fs::symlink(&sentinel, out_in_zone.join("evil")).unwrap();
    let to = dir.path().join("copied");
    let rec = scripted();
    in_zone(&rec, Host::Illumos, state.path(), &zonepath)
        .run(
            Path::new("/opt/ib/bin/image-builder"),
            &args(),
            Path::new("/rpool/images/output"),
            &to,
        )
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["SHA256SUMS", "g-z.zone.tar"]);
    assert_eq!(
        std::fs::read(to.join("g-z.zone.tar")).unwrap(),
        b"tar bytes"
    );
    // Teardown followed the copy.
    assert_eq!(
        rec.lines().last().unwrap(),
        "/usr/sbin/zonecfg -z ib1 delete -F"
    );
}

#[test]
fn the_inner_command_drops_zone_options_and_names_directories_absolutely() {
    let a: Vec<String> = [
        "-d",
        "rpool/images",
        "--in-zone",
        "ib1",
        "--zone-brand=sparse",
        "-T",
        "templates",
        "-Eext",
        "--external-src=more",
        "-g",
        "g",
        "-n",
        "n",
        "--zone-path",
        "/z",
        "--json",
    ]
    .map(String::from)
    .to_vec();
    let extra = ["-T", "/abs/templates", "-E", "/abs/ext"].map(String::from);
    assert_eq!(
        inner_args(&a, &extra),
        [
            "-d",
            "rpool/images",
            "-g",
            "g",
            "-n",
            "n",
            "--json",
            "-T",
            "/abs/templates",
            "-E",
            "/abs/ext",
            "--no-vm"
        ]
    );
}
