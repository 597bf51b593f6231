//! Exact command lines, pinned with the recorder (illumos paths: the primary target).

use std::time::Duration;

use runner::{Output, Recorder};

use super::{ExportRetry, ZfsCli, ZfsTools};
use crate::{CreateOptions, Health, PoolCreate, PoolImport, Zfs, ZfsError};

mod exists;

fn cli(rec: &Recorder) -> ZfsCli<&Recorder> {
    ZfsCli::new(rec, ZfsTools::in_dir("/usr/sbin")).with_export_retry(ExportRetry {
        attempts: 3,
        delay: Duration::ZERO,
    })
}

/// A recorder that answers every command without a rule with success and no output: what
/// zfs(8) and zpool(8) do for create, destroy, snapshot, rollback, clone, set, mount,
/// unmount, import and destroy, and send to a file (illumos-gate usr/src/cmd/zfs/zfs_main.c and
/// usr/src/cmd/zpool/zpool_main.c print only for -n/-v or on error). The tests using it
/// pin every command line, so no command can slip by unseen.
fn quiet_success() -> Recorder {
    Recorder::new().allow_unmatched()
}

#[test]
fn pool_create_pins_the_whole_command_line() {
    let rec = quiet_success();
    let spec = PoolCreate::new("rpool", ["/dev/lofi/1"])
        .no_features()
        .temp_name("TEMP-x")
        .altroot("/a")
        .pool_prop("ashift", "12");
    cli(&rec).pool_create(&spec).unwrap();
    assert_eq!(
        rec.lines(),
        ["/usr/sbin/zpool create -d -t TEMP-x -R /a -o ashift=12 rpool /dev/lofi/1"]
    );
}

#[test]
fn pool_create_with_an_efi_system_partition() {
    let rec = quiet_success();
    let spec = PoolCreate::new("rpool", ["/dev/dsk/c2t1d0"])
        .no_features()
        .boot_partition()
        .temp_name("TEMP-x");
    cli(&rec).pool_create(&spec).unwrap();
    assert_eq!(
        rec.lines(),
        ["/usr/sbin/zpool create -d -B -t TEMP-x rpool /dev/dsk/c2t1d0"]
    );
}

#[test]
fn pool_create_with_every_option() {
    let rec = quiet_success();
    let spec = PoolCreate::new("tank", ["mirror", "/dev/dsk/c1t0d0s0", "/dev/dsk/c1t1d0s0"])
        .force()
        .mountpoint("none")
        .pool_prop("cachefile", "none")
        .pool_prop("comment", "built image")
        .fs_prop("compression", "lz4")
        .fs_prop("atime", "off");
    cli(&rec).pool_create(&spec).unwrap();
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zpool create -f -m none -o cachefile=none -o 'comment=built image' \
          -O compression=lz4 -O atime=off tank mirror /dev/dsk/c1t0d0s0 /dev/dsk/c1t1d0s0"
        ]
    );
}

#[test]
fn pool_create_refuses_bad_input_without_running_anything() {
    let rec = Recorder::new();
    let z = cli(&rec);
    let none: [&str; 0] = [];
    assert!(matches!(
        z.pool_create(&PoolCreate::new("p", none)),
        Err(ZfsError::InvalidOptions(_))
    ));
    assert!(z.pool_create(&PoolCreate::new("p", ["-f"])).is_err());
    assert!(z.pool_create(&PoolCreate::new("-p", ["/f"])).is_err());
    assert!(z
        .pool_create(&PoolCreate::new("p", ["/f"]).pool_prop("a=b", "c"))
        .is_err());
    assert!(rec.lines().is_empty());
}

#[test]
fn create_with_parents_volume_and_props() {
    let rec = quiet_success();
    let z = cli(&rec);
    z.create(
        "rpool/images/work",
        &CreateOptions::new()
            .parents()
            .prop("mountpoint", "/images")
            .prop("sync", "disabled"),
    )
    .unwrap();
    z.create("rpool/swap", &CreateOptions::new().volume(1 << 30))
        .unwrap();
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zfs create -p -o mountpoint=/images -o sync=disabled rpool/images/work",
            "/usr/sbin/zfs create -V 1073741824 rpool/swap",
        ]
    );
}

#[test]
fn create_of_an_existing_dataset_is_reported_as_such() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zfs create", Output::failed(1, "any text at all"))
        .on("/usr/sbin/zfs list", Output::ok("rpool/a\n"));
    let err = cli(&rec)
        .create("rpool/a", &CreateOptions::new())
        .unwrap_err();
    assert_eq!(err.to_string(), "`rpool/a` already exists");
}

#[test]
fn incremental_send_and_receive_command_lines() {
    let rec = quiet_success();
    let z = cli(&rec);
    let stream = std::path::Path::new("/var/tmp/s.zfs");
    z.send_incremental("rpool/w/g/z@base", "rpool/w/g/z@pkgs", stream)
        .unwrap();
    z.receive("rpool/w/g/z@pkgs", stream, true).unwrap();
    z.receive("rpool/w/g/z@base", stream, false).unwrap();
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zfs send -i rpool/w/g/z@base rpool/w/g/z@pkgs",
            "/usr/sbin/zfs receive -F rpool/w/g/z@pkgs",
            "/usr/sbin/zfs receive rpool/w/g/z@base",
        ]
    );
    let calls = rec.calls();
    assert_eq!(calls[0].get_stdout_file(), Some(stream));
    assert_eq!(calls[1].get_stdin_file(), Some(stream));
    assert_eq!(calls[2].get_stdin_file(), Some(stream));
    // Datasets are not snapshots: refused before anything runs.
    assert!(z.send_incremental("rpool/a", "rpool/a@b", stream).is_err());
    assert!(z.receive("rpool/a", stream, false).is_err());
    assert_eq!(rec.lines().len(), 3);
}

#[test]
fn send_writes_the_stream_to_a_file() {
    let rec = quiet_success();
    let z = cli(&rec);
    z.send(
        "rpool/images/work/g/z@image",
        std::path::Path::new("/var/tmp/s.zfs"),
    )
    .unwrap();
    assert_eq!(
        rec.lines(),
        ["/usr/sbin/zfs send rpool/images/work/g/z@image"]
    );
    assert_eq!(
        rec.calls()[0].get_stdout_file(),
        Some(std::path::Path::new("/var/tmp/s.zfs"))
    );
    // A dataset is not a snapshot: refused before anything runs.
    assert!(z
        .send("rpool/a", std::path::Path::new("/var/tmp/s"))
        .is_err());
    assert_eq!(rec.lines().len(), 1);
}

#[test]
fn dataset_verbs() {
    let rec = quiet_success();
    let z = cli(&rec);
    z.destroy("rpool/a", true).unwrap();
    z.destroy("rpool/a@s", false).unwrap();
    z.snapshot("rpool/a@s1", &[("org.illumos.image-builder:key", "k1")])
        .unwrap();
    z.rollback("rpool/a@s1").unwrap();
    z.clone_snapshot("rpool/a@s1", "rpool/b", &[("canmount", "noauto")])
        .unwrap();
    z.set("rpool/a", "org.illumos.image-builder:key", "a b")
        .unwrap();
    z.mount("rpool/a").unwrap();
    z.unmount("rpool/a", false).unwrap();
    z.unmount("rpool/a", true).unwrap();
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zfs destroy -r rpool/a",
            "/usr/sbin/zfs destroy rpool/a@s",
            "/usr/sbin/zfs snapshot -o org.illumos.image-builder:key=k1 rpool/a@s1",
            "/usr/sbin/zfs rollback -r rpool/a@s1",
            "/usr/sbin/zfs clone -o canmount=noauto rpool/a@s1 rpool/b",
            "/usr/sbin/zfs set 'org.illumos.image-builder:key=a b' rpool/a",
            "/usr/sbin/zfs mount rpool/a",
            "/usr/sbin/zfs unmount rpool/a",
            "/usr/sbin/zfs unmount -f rpool/a",
        ]
    );
}

#[test]
fn get_tells_unset_from_set() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zfs get", Output::ok("-\t-\n"))
        .on("/usr/sbin/zfs get", Output::ok("-\tlocal\n"))
        .on("/usr/sbin/zfs get", Output::ok("1073741824\tdefault\n"))
        .on(
            "/usr/sbin/zfs get",
            Output::ok("a\tb\tinherited from rpool\n"),
        );
    let z = cli(&rec);
    assert_eq!(z.get("rpool/a", "org.x:k").unwrap(), None);
    assert_eq!(z.get("rpool/a", "org.x:k").unwrap().as_deref(), Some("-"));
    assert_eq!(
        z.get("rpool/a", "quota").unwrap().as_deref(),
        Some("1073741824")
    );
    assert_eq!(
        z.get("rpool/a", "org.x:k").unwrap().as_deref(),
        Some("a\tb")
    );
    assert_eq!(
        rec.lines()[0],
        "/usr/sbin/zfs get -H -p -o value,source org.x:k rpool/a"
    );
}

#[test]
fn get_with_garbage_output_is_a_parse_error() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zfs get", Output::ok("no tab here\n"));
    assert!(matches!(
        cli(&rec).get("rpool", "compression"),
        Err(ZfsError::Parse { .. })
    ));
}

#[test]
fn children_and_snapshots() {
    let rec = Recorder::new();
    rec.on(
        "/usr/sbin/zfs list",
        Output::ok("rpool/a\nrpool/a/b\nrpool/a/c\n"),
    )
    .on("/usr/sbin/zfs list", Output::ok("rpool/a@1\nrpool/a@2\n"));
    let z = cli(&rec);
    assert_eq!(z.children("rpool/a").unwrap(), ["rpool/a/b", "rpool/a/c"]);
    assert_eq!(z.snapshots("rpool/a").unwrap(), ["rpool/a@1", "rpool/a@2"]);
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zfs list -H -p -o name -t filesystem,volume -d 1 -s name rpool/a",
            "/usr/sbin/zfs list -H -p -o name -t snapshot -d 1 -s createtxg rpool/a",
        ]
    );
}

#[test]
fn import_with_every_option() {
    let rec = quiet_success();
    let z = cli(&rec);
    z.pool_import(
        &PoolImport::new("rpool")
            .new_name("img-1")
            .temporary()
            .dir("/var/tmp/vdevs")
            .dir("/dev/lofi")
            .altroot("/a")
            .no_mount()
            .readonly()
            .force()
            .prop("cachefile", "none"),
    )
    .unwrap();
    z.pool_import(&PoolImport::new("1234567890")).unwrap();
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zpool import -f -N -t -d /var/tmp/vdevs -d /dev/lofi -R /a \
             -o readonly=on -o cachefile=none rpool img-1",
            "/usr/sbin/zpool import 1234567890",
        ]
    );
    assert!(matches!(
        z.pool_import(&PoolImport::new("rpool").temporary()),
        Err(ZfsError::InvalidOptions(_))
    ));
}

#[test]
fn export_retries_while_the_pool_stays_imported() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zpool export", Output::failed(1, "pool is busy"))
        .on("/usr/sbin/zpool list", Output::ok("rpool\n"))
        .on("/usr/sbin/zpool export", Output::ok(""));
    cli(&rec).pool_export("rpool", false).unwrap();
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zpool export rpool",
            "/usr/sbin/zpool list -H -o name",
            "/usr/sbin/zpool export rpool",
        ]
    );
}

#[test]
fn export_gives_up_after_the_bound() {
    let rec = Recorder::new();
    rec.always("/usr/sbin/zpool export", Output::failed(1, "pool is busy"))
        .always("/usr/sbin/zpool list", Output::ok("rpool\n"));
    let err = cli(&rec).pool_export("rpool", true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pool `rpool` could not be exported after 3 attempts"
    );
    let exports = rec
        .lines()
        .into_iter()
        .filter(|l| l == "/usr/sbin/zpool export -f rpool")
        .count();
    assert_eq!(exports, 3);
}

#[test]
fn export_of_a_pool_that_is_not_imported_is_not_found() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zpool export", Output::failed(1, ""))
        .on("/usr/sbin/zpool list", Output::ok("other\n"));
    let err = cli(&rec).pool_export("rpool", false).unwrap_err();
    assert!(matches!(err, ZfsError::NotFound { .. }), "{err}");
    assert_eq!(rec.lines().len(), 2);
}

#[test]
fn pool_properties_and_health() {
    let rec = quiet_success();
    rec.on("/usr/sbin/zpool get", Output::ok("rpool/ROOT/oi\n"))
        .on("/usr/sbin/zpool list", Output::ok("DEGRADED\n"))
        .on("/usr/sbin/zpool list", Output::ok("rpool\ntank\n"));
    let z = cli(&rec);
    assert_eq!(z.pool_get("rpool", "bootfs").unwrap(), "rpool/ROOT/oi");
    z.pool_set("rpool", "bootfs", "rpool/ROOT/oi").unwrap();
    assert_eq!(z.pool_health("rpool").unwrap(), Health::Degraded);
    assert_eq!(z.pools().unwrap(), ["rpool", "tank"]);
    z.pool_destroy("tank", true).unwrap();
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zpool get -H -p -o value bootfs rpool",
            "/usr/sbin/zpool set bootfs=rpool/ROOT/oi rpool",
            "/usr/sbin/zpool list -H -o health rpool",
            "/usr/sbin/zpool list -H -o name",
            "/usr/sbin/zpool destroy -f tank",
        ]
    );
}

#[test]
fn names_that_look_like_options_never_reach_a_command() {
    let rec = Recorder::new();
    let z = cli(&rec);
    assert!(z.destroy("-r", false).is_err());
    assert!(z.snapshot("rpool/a", &[]).is_err());
    assert!(z.rollback("rpool/a").is_err());
    assert!(z.set("rpool/a", "k=v", "x").is_err());
    assert!(z.exists("rpool/a b").is_err());
    assert!(z.pool_get("-a", "health").is_err());
    assert!(rec.lines().is_empty());
}

#[test]
fn filesystems_are_listed_with_their_mounts_in_one_command() {
    let rec = Recorder::new();
    rec.on(
        "/usr/sbin/zfs list",
        Output::ok("rpool/images\t/images\tyes\nrpool/images/output\t/images/output\tno\n"),
    );
    let z = cli(&rec);
    let fs = z.filesystems(&["rpool/images", "rpool/x"], 1).unwrap();
    assert_eq!(
        rec.lines(),
        ["/usr/sbin/zfs list -H -p -o name,mountpoint,mounted -t filesystem -d 1 rpool/images rpool/x"]
    );
    assert_eq!(fs.len(), 2);
    assert_eq!(
        (
            fs[1].name.as_str(),
            fs[1].mountpoint.as_str(),
            fs[1].mounted
        ),
        ("rpool/images/output", "/images/output", false)
    );
    assert!(fs[0].mounted);
    assert!(z.filesystems(&[], 0).unwrap().is_empty());
    assert!(z.filesystems(&["bad name"], 0).is_err());
    rec.on("/usr/sbin/zfs list", Output::ok("garbage\n"));
    assert!(matches!(
        z.filesystems(&["rpool"], 0),
        Err(ZfsError::Parse { .. })
    ));
    rec.on(
        "/usr/sbin/zfs list",
        Output::failed(1, "cannot open 'rpool/x': dataset does not exist"),
    );
    assert!(z.filesystems(&["rpool/x"], 0).is_err());
}

#[test]
fn a_work_dataset_its_snapshots_and_their_properties_come_from_one_listing() {
    let rec = Recorder::new();
    // zfs(8) list -H: one row per data set, fields separated by one tab; print_dataset in
    // zfs_main.c prints "-" for an unset user property and for a property the type lacks
    // (`written` of a snapshot is a number, the key of the file system "-").
    rec.on(
        "/usr/sbin/zfs list",
        Output::ok(
            "rpool/w\t8815304164313270471\t0\t-\n\
             rpool/w@one\t1204569231985093442\t81920\tab12\n\
             rpool/w@two\t509915711214882081\t0\t-\n",
        ),
    );
    let z = cli(&rec);
    let rows = z
        .list(
            &["rpool/w"],
            1,
            &["guid", "written", "org.illumos.image-builder:key"],
        )
        .unwrap();
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zfs list -H -p -o name,guid,written,org.illumos.image-builder:key \
             -t filesystem,snapshot -s createtxg -d 1 rpool/w"
        ]
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].name, "rpool/w@one");
    assert_eq!(rows[1].values[2].as_deref(), Some("ab12"));
    assert_eq!(rows[2].values[2], None);
    assert_eq!(rows[0].values[1].as_deref(), Some("0"));
    assert!(rows[1].is_snapshot_of("rpool/w") && !rows[0].is_snapshot_of("rpool/w"));
    assert!(!rows[1].is_snapshot_of("rpool"));
    // A row with a field missing is a parse error naming the command.
    rec.on("/usr/sbin/zfs list", Output::ok("rpool/w\t1\n"));
    assert!(matches!(
        z.list(&["rpool/w"], 1, &["guid", "written"]),
        Err(ZfsError::Parse { .. })
    ));
    assert!(z.list(&["bad name"], 1, &[]).is_err());
    assert!(z.list(&["rpool/w"], 1, &["a=b"]).is_err());
    // A root that is not there, named by the listing's own error (libzfs_util.c,
    // zfs_verror: "cannot open 'NAME': dataset does not exist"; zfs_for_each lists the
    // other roots meanwhile): no other command.
    rec.clear();
    rec.on(
        "/usr/sbin/zfs list -H -p -o name,guid",
        Output::failed(1, "cannot open 'rpool/x': dataset does not exist\n"),
    );
    assert!(matches!(
        z.list(&["rpool/w", "rpool/x"], 1, &["guid"]),
        Err(ZfsError::NotFound { name }) if name == "rpool/x"
    ));
    assert_eq!(rec.lines().len(), 1);
    // Any other failure: each root is asked about (the root itself, then its parent,
    // zfs(8) list -d 1).
    rec.clear();
    rec.on(
        "/usr/sbin/zfs list -H -p -o name,guid",
        Output::failed(1, "some other failure"),
    );
    rec.on(
        "/usr/sbin/zfs list -H -p -o name -t all rpool/x",
        Output::failed(1, "I/O error"),
    );
    rec.on(
        "/usr/sbin/zfs list -H -p -o name -t all -d 1 rpool",
        Output::ok("rpool\nrpool/w\n"),
    );
    assert!(matches!(
        z.list(&["rpool/x"], 1, &["guid"]),
        Err(ZfsError::NotFound { name }) if name == "rpool/x"
    ));
    assert_eq!(rec.lines().len(), 3);
    rec.assert_all_rules_used();
}

/// The handle's time limit reaches every command, the existence probes included (a
/// `zfs list` on a pool whose device went away blocks like any other command).
#[test]
fn the_time_limit_reaches_every_command() {
    let rec = Recorder::new();
    // A listing that fails without saying why; the parent listing then answers.
    rec.on(
        "/usr/sbin/zfs list -H -p -o name -t all rpool/a",
        Output::failed(1, "\n"),
    );
    rec.on(
        "/usr/sbin/zfs list -H -p -o name -t all -d 1 rpool",
        Output::ok("rpool\nrpool/b\n"),
    );
    let limit = Duration::from_secs(7);
    let z = cli(&rec).with_timeout(limit);
    assert!(!z.exists("rpool/a").unwrap());
    let calls = rec.calls();
    assert!(calls.len() >= 2, "{:?}", rec.lines());
    for c in calls {
        assert_eq!(c.get_timeout(), Some(limit), "{}", c.display());
    }
}

#[test]
fn snapshots_of_one_dataset_are_destroyed_in_one_command() {
    let rec = quiet_success();
    let z = cli(&rec);
    z.destroy_snapshots("rpool/w", &["ib:after-001", "ib:after-004"])
        .unwrap();
    z.destroy_snapshots("rpool/w", &[]).unwrap();
    assert_eq!(
        rec.lines(),
        ["/usr/sbin/zfs destroy rpool/w@ib:after-001,ib:after-004"]
    );
    // A comma would split the list and a % make a range: refused before any command.
    for bad in ["a,b", "a%b"] {
        assert!(matches!(
            z.destroy_snapshots("rpool/w", &["ok", bad]),
            Err(ZfsError::InvalidName { .. })
        ));
    }
    assert_eq!(rec.lines().len(), 1);
}
