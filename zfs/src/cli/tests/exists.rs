//! Whether a data set exists, decided in as few commands as possible: from one listing,
//! from the failed command's own error, or by walking up the parents.

use runner::{Output, Recorder};

use super::cli;
use crate::{Zfs, ZfsError};

#[test]
fn exists_true_from_one_listing() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zfs list", Output::ok("rpool/a@s\n"));
    assert!(cli(&rec).exists("rpool/a@s").unwrap());
    assert_eq!(
        rec.lines(),
        ["/usr/sbin/zfs list -H -p -o name -t all rpool/a@s"]
    );
}

#[test]
fn exists_false_is_decided_by_the_parent_listing() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zfs list", Output::failed(1, "whatever language"))
        .on(
            "/usr/sbin/zfs list",
            Output::ok("rpool/a\nrpool/a/c\nrpool/a@s\n"),
        );
    assert!(!cli(&rec).exists("rpool/a/b").unwrap());
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zfs list -H -p -o name -t all rpool/a/b",
            "/usr/sbin/zfs list -H -p -o name -t all -d 1 rpool/a",
        ]
    );
}

#[test]
fn exists_walks_up_to_the_pool_list() {
    let rec = Recorder::new();
    rec.always("/usr/sbin/zfs list", Output::failed(1, ""))
        .on("/usr/sbin/zpool list", Output::ok("rpool\n"));
    assert!(!cli(&rec).exists("tank/a").unwrap());
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zfs list -H -p -o name -t all tank/a",
            "/usr/sbin/zfs list -H -p -o name -t all -d 1 tank",
            "/usr/sbin/zfs list -H -p -o name -t all tank",
            "/usr/sbin/zpool list -H -o name",
        ]
    );
}

#[test]
fn exists_is_an_error_when_zfs_cannot_answer() {
    // The parent lists the name, yet listing the name itself failed: not "missing".
    let rec = Recorder::new();
    rec.on("/usr/sbin/zfs list", Output::failed(1, "I/O error"))
        .on("/usr/sbin/zfs list", Output::ok("rpool\nrpool/a\n"));
    assert!(matches!(cli(&rec).exists("rpool/a"), Err(ZfsError::Run(_))));

    // A pool that is imported but cannot be listed.
    let rec = Recorder::new();
    rec.on("/usr/sbin/zfs list", Output::failed(1, ""))
        .on("/usr/sbin/zpool list", Output::ok("rpool\n"));
    assert!(cli(&rec).exists("rpool").is_err());

    // No ZFS at all.
    let rec = Recorder::new();
    rec.always("/usr/sbin/", Output::failed(1, "/dev/zfs missing"));
    assert!(cli(&rec).exists("rpool").is_err());
}

#[test]
fn get_on_a_missing_dataset_is_not_found() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zfs get", Output::failed(1, ""))
        .on("/usr/sbin/zfs list", Output::failed(1, ""))
        .on("/usr/sbin/zfs list", Output::ok("rpool\n"));
    let err = cli(&rec).get("rpool/gone", "mountpoint").unwrap_err();
    assert_eq!(err.to_string(), "`rpool/gone` does not exist");
}

#[test]
fn exists_false_from_the_listings_own_error() {
    let rec = Recorder::new();
    // libzfs_util.c, zfs_verror: "ACTION: DESCRIPTION"; zfs_open's action "cannot open
    // 'NAME'", EZFS_NOENT's description "dataset does not exist".
    rec.on(
        "/usr/sbin/zfs list",
        Output::failed(1, "cannot open 'rpool/a/b': dataset does not exist\n"),
    );
    assert!(!cli(&rec).exists("rpool/a/b").unwrap());
    assert_eq!(
        rec.lines(),
        ["/usr/sbin/zfs list -H -p -o name -t all rpool/a/b"]
    );
    // The message names another data set: no answer, the parent is asked.
    let rec = Recorder::new();
    rec.on(
        "/usr/sbin/zfs list",
        Output::failed(1, "cannot open 'rpool/a/bc': dataset does not exist\n"),
    )
    .on("/usr/sbin/zfs list", Output::ok("rpool/a\n"));
    assert!(!cli(&rec).exists("rpool/a/b").unwrap());
    assert_eq!(rec.lines().len(), 2);
}

#[test]
fn a_command_on_a_missing_dataset_is_not_found_from_its_own_error() {
    let rec = Recorder::new();
    rec.on(
        "/usr/sbin/zfs destroy",
        Output::failed(1, "cannot open 'rpool/gone': dataset does not exist\n"),
    );
    let err = cli(&rec).destroy("rpool/gone", true).unwrap_err();
    assert!(matches!(err, ZfsError::NotFound { name } if name == "rpool/gone"));
    assert_eq!(rec.lines(), ["/usr/sbin/zfs destroy -r rpool/gone"]);
}
