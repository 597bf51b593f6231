//! Tests of the users plugin.
use super::super::testing;
use super::*;
use runner::{Output, Recorder};
use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn root_with_user(t: &std::path::Path) {
    std::fs::create_dir_all(t.join("etc")).unwrap();
    std::fs::write(t.join("etc/passwd"), "root:x:0:0:Super-User:/root:/usr/bin/bash\nann:x:1234:10:Ann:/export/home/ann:/usr/bin/bash\n").unwrap();
    std::fs::write(
        t.join("etc/shadow"),
        "root:$5$r:19000::::::\nann:*LK*:::::::\n",
    )
    .unwrap();
}

#[test]
fn new_user_command_is_exact_and_chrooted_under_an_alternate_root() {
    let t = tempfile::tempdir().unwrap();
    root_with_user(t.path());
    let rec = Recorder::new();
    // useradd(8): prints nothing and exits 0 on success.
    rec.on("/usr/sbin/chroot", Output::ok(""));
    let d = json!({"users": [{"name": "bob", "uid": 2000, "group": "staff", "groups": ["adm", "sys"], "gecos": "Bob B", "shell": "/usr/bin/bash", "profiles": ["Primary Administrator"]}]});
    let r = testing::apply(&Users, t.path(), &rec, d, false).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        rec.lines(),
        [format!("/usr/sbin/chroot {} /usr/sbin/useradd -u 2000 -g staff -G adm,sys -c 'Bob B' -s /usr/bin/bash -P 'Primary Administrator' -m -d /export/home/bob bob", t.path().display())]
    );
    let ctx = Ctx::new(crate::rootfs::Root::new("/"), true, &rec);
    let u: User = serde_json::from_value(json!({"name": "bob"})).unwrap();
    assert_eq!(
        useradd(&ctx, &u).display(),
        "/usr/sbin/useradd -m -d /export/home/bob bob"
    );
}

#[test]
fn keys_and_password_for_an_existing_user() {
    if !testing::root_or_skip("keys_and_password_for_an_existing_user") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    root_with_user(t.path());
    let rec = Recorder::new();
    let secret = "$6$saltsalt$VerySecretHashValue";
    let d = json!({"users": [{"name": "ann", "password_hash": secret, "ssh_authorized_keys": ["ssh-ed25519 AAAA ann@a", "ssh-rsa BBBB ann@b"]}]});
    let r = testing::apply(&Users, t.path(), &rec, d.clone(), false).unwrap();
    assert!(
        r.iter().all(|r| r.status == crate::protocol::Status::Ok),
        "{r:?}"
    );
    let shadow = std::fs::read_to_string(t.path().join("etc/shadow")).unwrap();
    assert!(
        shadow
            .lines()
            .any(|l| l.starts_with(&format!("ann:{secret}:"))),
        "{shadow}"
    );
    let meta = std::fs::metadata(t.path().join("etc/shadow")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    let keys = t.path().join("export/home/ann/.ssh/authorized_keys");
    assert_eq!(
        std::fs::read_to_string(&keys).unwrap(),
        "ssh-ed25519 AAAA ann@a\nssh-rsa BBBB ann@b\n"
    );
    let m = std::fs::metadata(&keys).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o777),
        (1234, 10, 0o600)
    );
    let d = std::fs::metadata(t.path().join("export/home/ann/.ssh")).unwrap();
    assert_eq!((d.uid(), d.permissions().mode() & 0o777), (1234, 0o700));
    let text = serde_json::to_string(&r).unwrap();
    assert!(
        !text.contains("VerySecret"),
        "results must not carry the hash: {text}"
    );
    assert!(testing::plan(&Users, t.path(), &rec, d_again())
        .unwrap()
        .is_empty());
    fn d_again() -> Value {
        json!({"users": [{"name": "ann", "password_hash": "$6$saltsalt$VerySecretHashValue", "ssh_authorized_keys": ["ssh-ed25519 AAAA ann@a", "ssh-rsa BBBB ann@b"]}]})
    }
}

#[test]
fn existing_user_gets_usermod_for_what_differs_only() {
    let t = tempfile::tempdir().unwrap();
    root_with_user(t.path());
    std::fs::write(
        t.path().join("etc/group"),
        "staff::10:\nadm::4:root,ann\nsys::3:root\n",
    )
    .unwrap();
    let rec = Recorder::new();
    // usermod(8): prints nothing and exits 0 on success.
    rec.on("/usr/sbin/chroot", Output::ok(""));
    let d = json!({"users": [{"name": "ann", "groups": ["sys", "adm"], "shell": "/usr/bin/bash", "gecos": "Ann A"}]});
    let r = testing::apply(&Users, t.path(), &rec, d, false).unwrap();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        rec.lines(),
        [format!(
            "/usr/sbin/chroot {} /usr/sbin/usermod -G sys,adm -c 'Ann A' ann",
            t.path().display()
        )]
    );
    let same = json!({"users": [{"name": "ann", "groups": ["adm"], "shell": "/usr/bin/bash", "gecos": "Ann"}]});
    assert!(testing::plan(&Users, t.path(), &rec, same)
        .unwrap()
        .is_empty());
}

#[test]
fn groups_come_first_then_users_members_sudo_and_deferred_files() {
    if !testing::root_or_skip("groups_come_first_then_users_members_sudo_and_deferred_files") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    root_with_user(t.path());
    std::fs::write(t.path().join("etc/group"), "root::0:\nstaff::10:\n").unwrap();
    std::fs::write(t.path().join("etc/sudoers"), "root ALL=(ALL) ALL\n").unwrap();
    std::fs::write(t.path().join("etc/crontab"), "0 * * * * old\n").unwrap();
    // groupadd, useradd and usermod print nothing on success (groupadd(8), useradd(8),
    // usermod(8)): the commands without a rule succeed silently, and the test pins
    // every command line below.
    let rec = Recorder::new().allow_unmatched();
    let d = json!({
        "groups": [{"name": "devs", "members": ["ann"]}],
        "users": [
            {"name": "bob", "groups": ["devs"]},
            {"name": "ann", "lock_password": true, "sudo": ["ALL=(ALL) NOPASSWD:ALL"]}
        ],
        "deferred_files": [
            {"path": "/export/home/ann/notes", "content": "hi\n", "owner": "ann", "group": "staff", "mode": "0600"},
            {"path": "/etc/crontab", "content": "5 * * * * new\n", "append": true}
        ]
    });
    let plan = testing::plan(&Users, t.path(), &rec, d.clone()).unwrap();
    let ids: Vec<&str> = plan.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "group/devs/create",
            "bob/create",
            "ann/password",
            "sudo",
            "group/devs/members",
            "deferred_files:/export/home/ann/notes",
            "deferred_files:/etc/crontab"
        ]
    );
    let r = testing::apply(&Users, t.path(), &rec, d, false).unwrap();
    // ann exists, so her membership is added although the recorder made no group.
    let failed: Vec<&str> = r
        .iter()
        .filter(|r| r.status != crate::protocol::Status::Ok)
        .map(|r| r.id.as_str())
        .collect();
    assert!(failed.is_empty(), "{r:?}");
    let root = t.path().display();
    // groupadd(8): `groupadd [-g gid [-o]] group`; usermod(8): `-G group[,group...]`
    // replaces the supplementary groups, so ann's current ones (none) come along.
    assert_eq!(
        rec.lines(),
        [
            format!("/usr/sbin/chroot {root} /usr/sbin/groupadd devs"),
            format!("/usr/sbin/chroot {root} /usr/sbin/useradd -G devs -m -d /export/home/bob bob"),
            format!("/usr/sbin/chroot {root} /usr/sbin/usermod -G devs ann"),
        ]
    );
    let shadow = std::fs::read_to_string(t.path().join("etc/shadow")).unwrap();
    assert!(shadow.lines().any(|l| l.starts_with("ann:NP:")), "{shadow}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("etc/sudoers.d/90-sysconfig-users")).unwrap(),
        "# Written by sysconfig from the users' sudo rules.\n\n# User rules for ann\nann ALL=(ALL) NOPASSWD:ALL\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("etc/sudoers")).unwrap(),
        "root ALL=(ALL) ALL\n#includedir /etc/sudoers.d\n"
    );
    let m = std::fs::metadata(t.path().join("export/home/ann/notes")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o777),
        (1234, 10, 0o600)
    );
    // append keeps what was there.
    assert_eq!(
        std::fs::read_to_string(t.path().join("etc/crontab")).unwrap(),
        "0 * * * * old\n5 * * * * new\n"
    );
}

#[test]
fn plain_text_password_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let err = testing::plan(
        &Users,
        t.path(),
        &Recorder::new(),
        json!({"users": [{"name": "a", "password_hash": "hunter2"}]}),
    )
    .unwrap_err();
    assert!(
        err.contains("crypt(3)") && !err.contains("hunter2"),
        "{err}"
    );
}
