//! users: `groupadd` for the groups first, `useradd` for new users, the password hash
//! (or `NP`), sudo rules, ~/.ssh/authorized_keys owned by the user with mode 0600, group
//! members, and last the files that wait for the users (`deferred_files`).
//!
//! `lock_password` (cloud-init's `lock_passwd`, on by default there) writes `NP` as the
//! password field: illumos `passwd -N` "makes the password entry for name a value that
//! cannot be used for login, but does not lock the account" (passwd(1)); `NP` is
//! `NOLOGINSTRING` in illumos-gate `usr/src/head/shadow.h`. `passwd -l` would write
//! `*LK*` (`LOCKSTRING`), and sshd refuses even key logins to an account locked so.
//!
//! illumos `passmgmt` takes no password option (its options are -a/-m/-d with -c -h -u
//! -o -g -s -l -e -f -K and the RBAC letters), and a hash on any command line would show
//! in `ps`. So the hash goes straight into the user's /etc/shadow entry, written
//! atomically with the file's usual mode 0400, and never into a log, a change or a result.
//! Under an alternate root `useradd` runs chrooted into it, so it edits the image's
//! /etc/passwd and creates the home directory inside the image.

use std::time::{SystemTime, UNIX_EPOCH};

use runner::Cmd;
use serde_json::{json, Map, Value};

use super::etcfiles;
use super::{change, typed, Ctx, Outcome, Plugin};
use crate::protocol::Change;
use crate::schema::{FileSpec, Group, User};

pub struct Users;

/// Default homes live under /export/home: /home is the automounter's on illumos, and
/// `useradd -m` cannot create a directory there.
pub fn home_of(u: &User) -> String {
    u.home
        .clone()
        .unwrap_or_else(|| format!("/export/home/{}", u.name))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && n.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.'
        })
}

pub fn useradd(ctx: &Ctx, u: &User) -> Cmd {
    let mut args: Vec<String> = Vec::new();
    if let Some(uid) = u.uid {
        args.extend(["-u".into(), uid.to_string()]);
    }
    if let Some(g) = &u.group {
        args.extend(["-g".into(), g.clone()]);
    }
    if !u.groups.is_empty() {
        args.extend(["-G".into(), u.groups.join(",")]);
    }
    if let Some(c) = &u.gecos {
        args.extend(["-c".into(), c.clone()]);
    }
    if let Some(s) = &u.shell {
        args.extend(["-s".into(), s.clone()]);
    }
    if !u.profiles.is_empty() {
        args.extend(["-P".into(), u.profiles.join(",")]);
    }
    args.extend(["-m".into(), "-d".into(), home_of(u), u.name.clone()]);
    in_root(ctx, "/usr/sbin/useradd", args)
}

/// `usermod` options for what differs between an existing user and the desired one
/// (supplementary groups, shell, comment); empty when nothing does.
pub fn usermod_args(ctx: &Ctx, u: &User, e: &etcfiles::PasswdEntry) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    if !u.groups.is_empty() {
        let mut want = u.groups.clone();
        want.sort();
        if etcfiles::groups_of(ctx, &u.name)? != want {
            args.extend(["-G".into(), u.groups.join(",")]);
        }
    }
    if let Some(s) = u.shell.as_ref().filter(|s| **s != e.shell) {
        args.extend(["-s".into(), s.clone()]);
    }
    if let Some(c) = u.gecos.as_ref().filter(|c| **c != e.gecos) {
        args.extend(["-c".into(), c.clone()]);
    }
    Ok(args)
}

fn in_root(ctx: &Ctx, prog: &str, args: Vec<String>) -> Cmd {
    if ctx.live() {
        Cmd::new(prog).args(args)
    } else {
        Cmd::new("/usr/sbin/chroot")
            .arg(ctx.root.dir())
            .arg(prog)
            .args(args)
    }
}

/// groupadd(8): `groupadd [-g gid [-o]] group` (illumos-gate
/// `usr/src/cmd/oamuser/group/groupadd.c`, its usage comment).
pub fn groupadd(ctx: &Ctx, name: &str) -> Cmd {
    in_root(ctx, "/usr/sbin/groupadd", vec![name.to_string()])
}

/// The sudo drop-in file and the line that makes sudo read the directory.
pub const SUDOERS_D: &str = "/etc/sudoers.d/90-sysconfig-users";
const INCLUDEDIR: &str = "#includedir /etc/sudoers.d";

/// The drop-in's text: `# User rules for NAME` then `NAME RULE` lines, as cloud-init's
/// `Distro.write_sudo_rules` writes them.
fn sudoers_text(users: &[User]) -> Option<String> {
    let mut s = String::new();
    for u in users.iter().filter(|u| !u.sudo.is_empty()) {
        s.push_str(&format!("\n# User rules for {}\n", u.name));
        for r in &u.sudo {
            s.push_str(&format!("{} {}\n", u.name, r.replace('\n', " ")));
        }
    }
    (!s.is_empty()).then(|| format!("# Written by sysconfig from the users' sudo rules.\n{s}"))
}

/// The password field the user should have, if sysconfig sets one.
fn wanted_password(u: &User) -> Option<&str> {
    if u.lock_password {
        Some("NP")
    } else {
        u.password_hash.as_deref()
    }
}

fn keys_text(u: &User) -> String {
    let mut s = u.ssh_authorized_keys.join("\n");
    s.push('\n');
    s
}

fn find<'a>(users: &'a [User], name: &str) -> Result<&'a User, String> {
    users
        .iter()
        .find(|u| u.name == name)
        .ok_or(format!("user {name} is not in the desired state"))
}

impl Plugin for Users {
    const NAME: &'static str = "users";
    const KEYS: &'static [&'static str] = &["users", "groups", "deferred_files"];

    fn plan(&self, ctx: &Ctx, desired: &Map<String, Value>) -> Result<Vec<Change>, String> {
        let users = typed::<Vec<User>>(desired, "users")?.unwrap_or_default();
        let groups = typed::<Vec<Group>>(desired, "groups")?.unwrap_or_default();
        let deferred = typed::<Vec<FileSpec>>(desired, "deferred_files")?.unwrap_or_default();
        let mut out = Vec::new();
        // Groups first: useradd -G needs them.
        for g in &groups {
            if !valid_name(&g.name) {
                return Err(format!("group name {:?} is not valid", g.name));
            }
            if etcfiles::group_members(ctx, &g.name)?.is_none() {
                out.push(change(
                    "groups",
                    format!("group/{}/create", g.name),
                    format!("create group {}", g.name),
                    json!({"group": g.name}),
                ));
            }
        }
        for u in &users {
            if !valid_name(&u.name) {
                return Err(format!("user name {:?} is not valid", u.name));
            }
            if let Some(h) = &u.password_hash {
                if !h.starts_with('$') || h.contains(':') || h.contains('\n') {
                    return Err(format!(
                        "user {}: password_hash must be a crypt(3) string",
                        u.name
                    ));
                }
            }
            let existing = etcfiles::user(ctx, &u.name)?;
            match &existing {
                None => out.push(change(
                    "users",
                    format!("{}/create", u.name),
                    format!("create user {}", u.name),
                    json!({"user": u.name}),
                )),
                Some(e) => {
                    let args = usermod_args(ctx, u, e)?;
                    if !args.is_empty() {
                        let what: Vec<&str> = args.iter().step_by(2).map(String::as_str).collect();
                        out.push(change(
                            "users",
                            format!("{}/modify", u.name),
                            format!("usermod {} for {}", what.join(" "), u.name),
                            json!({"user": u.name}),
                        ));
                    }
                }
            }
            if let Some(h) = wanted_password(u) {
                if etcfiles::shadow_hash(ctx, &u.name)?.as_deref() != Some(h) {
                    let what = if u.lock_password {
                        format!("turn off password login for {} (NP)", u.name)
                    } else {
                        format!("set the password hash of {}", u.name)
                    };
                    out.push(change(
                        "users",
                        format!("{}/password", u.name),
                        what,
                        json!({"user": u.name}),
                    ));
                }
            }
            if !u.ssh_authorized_keys.is_empty() {
                let home = existing
                    .as_ref()
                    .map(|e| e.home.clone())
                    .unwrap_or_else(|| home_of(u));
                let path = format!("{home}/.ssh/authorized_keys");
                if ctx.read(&path)?.as_deref() != Some(keys_text(u).as_str()) {
                    out.push(change(
                        "users",
                        format!("{}/ssh-keys", u.name),
                        format!("write {} SSH key(s) to {path}", u.ssh_authorized_keys.len()),
                        json!({"user": u.name}),
                    ));
                }
            }
        }
        if let Some(text) = sudoers_text(&users) {
            let sudoers = ctx.read("/etc/sudoers")?;
            let include_missing = sudoers.as_deref().is_some_and(|s| {
                !s.lines().any(|l| {
                    let l = l.trim();
                    l == INCLUDEDIR || l == "@includedir /etc/sudoers.d"
                })
            });
            if ctx.read(SUDOERS_D)?.as_deref() != Some(text.as_str()) || include_missing {
                out.push(change(
                    "users",
                    "sudo",
                    format!(
                        "write the sudo rules of {} user(s) to {SUDOERS_D}",
                        users.iter().filter(|u| !u.sudo.is_empty()).count()
                    ),
                    json!({}),
                ));
            }
        }
        for g in &groups {
            let have = etcfiles::group_members(ctx, &g.name)?.unwrap_or_default();
            let missing: Vec<&String> = g.members.iter().filter(|m| !have.contains(m)).collect();
            if !missing.is_empty() {
                out.push(change(
                    "groups",
                    format!("group/{}/members", g.name),
                    format!(
                        "add {} to group {}",
                        missing
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        g.name
                    ),
                    json!({"group": g.name}),
                ));
            }
        }
        for (i, f) in deferred.iter().enumerate() {
            out.extend(super::files::plan_file(ctx, "deferred_files", i, f)?);
        }
        Ok(out)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        desired: &Map<String, Value>,
        c: &Change,
    ) -> Result<Outcome, String> {
        let users = typed::<Vec<User>>(desired, "users")?.unwrap_or_default();
        match c.key.as_str() {
            "deferred_files" => {
                let files = typed::<Vec<FileSpec>>(desired, "deferred_files")?.unwrap_or_default();
                let f = c
                    .data
                    .get("index")
                    .and_then(Value::as_u64)
                    .and_then(|i| files.get(i as usize))
                    .ok_or("the change does not name a deferred file")?;
                return super::files::apply_file(ctx, f);
            }
            "groups" => return apply_group(ctx, desired, c),
            _ => {}
        }
        if c.id == "sudo" {
            let text = sudoers_text(&users).unwrap_or_default();
            ctx.mkdir("/etc/sudoers.d", 0o750, Some((0, 0)))?;
            ctx.write(SUDOERS_D, text.as_bytes(), 0o440, Some((0, 0)))?;
            // As cloud-init's ensure_sudo_dir: an /etc/sudoers that does not read the
            // directory gets the line that makes it.
            if let Some(s) = ctx.read("/etc/sudoers")? {
                if !s
                    .lines()
                    .any(|l| matches!(l.trim(), INCLUDEDIR | "@includedir /etc/sudoers.d"))
                {
                    let mut s = s;
                    if !s.ends_with('\n') {
                        s.push('\n');
                    }
                    s.push_str(INCLUDEDIR);
                    s.push('\n');
                    ctx.write("/etc/sudoers", s.as_bytes(), 0o440, Some((0, 0)))?;
                }
            }
            return Ok(Outcome::Done);
        }
        let name = c
            .data
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let u = find(&users, name)?;
        let what = c.id.rsplit('/').next().unwrap_or_default();
        match what {
            "create" => {
                ctx.run(useradd(ctx, u))?;
            }
            "modify" => {
                let e = etcfiles::user(ctx, name)?.ok_or(format!("user {name} does not exist"))?;
                let mut args = usermod_args(ctx, u, &e)?;
                if args.is_empty() {
                    return Ok(Outcome::Done);
                }
                args.push(name.to_string());
                ctx.run(in_root(ctx, "/usr/sbin/usermod", args))?;
            }
            "password" => {
                let hash = wanted_password(u).ok_or("no password hash")?;
                if ctx.dry_run {
                    ctx.write("/etc/shadow", b"", 0o400, Some((0, 3)))?;
                    return Ok(Outcome::Done);
                }
                let shadow = ctx.read("/etc/shadow")?.ok_or("/etc/shadow is missing")?;
                let today = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() / 86400)
                    .unwrap_or(0);
                let new = etcfiles::shadow_with(&shadow, name, hash, today)
                    .ok_or(format!("{name} has no /etc/shadow entry"))?;
                // root:sys, as illumos ships it.
                ctx.write("/etc/shadow", new.as_bytes(), 0o400, Some((0, 3)))?;
            }
            "ssh-keys" => {
                let entry = etcfiles::user(ctx, name)?;
                let (home, owner) = match entry {
                    Some(e) => (e.home, Some((e.uid, e.gid))),
                    // Only in a dry run can the user still be missing here.
                    None if ctx.dry_run => (home_of(u), None),
                    None => return Err(format!("user {name} does not exist")),
                };
                ctx.mkdir(&format!("{home}/.ssh"), 0o700, owner)?;
                ctx.write(
                    &format!("{home}/.ssh/authorized_keys"),
                    keys_text(u).as_bytes(),
                    0o600,
                    owner,
                )?;
            }
            other => return Err(format!("unknown change {other}")),
        }
        Ok(Outcome::Done)
    }
}

/// `groupadd` for a new group; `usermod -G` (the member's groups and this one: illumos
/// usermod has no append option, usermod(8)) for each member that exists.
fn apply_group(ctx: &Ctx, desired: &Map<String, Value>, c: &Change) -> Result<Outcome, String> {
    let groups = typed::<Vec<Group>>(desired, "groups")?.unwrap_or_default();
    let name = c
        .data
        .get("group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let g = groups
        .iter()
        .find(|g| g.name == name)
        .ok_or(format!("group {name} is not in the desired state"))?;
    if c.id.ends_with("/create") {
        ctx.run(groupadd(ctx, &g.name))?;
        return Ok(Outcome::Done);
    }
    let have = etcfiles::group_members(ctx, &g.name)?.unwrap_or_default();
    let mut missing_users = Vec::new();
    for m in g.members.iter().filter(|m| !have.contains(m)) {
        if etcfiles::user(ctx, m)?.is_none() && !ctx.dry_run {
            missing_users.push(m.clone());
            continue;
        }
        let mut list = etcfiles::groups_of(ctx, m)?;
        list.push(g.name.clone());
        ctx.run(in_root(
            ctx,
            "/usr/sbin/usermod",
            vec!["-G".into(), list.join(","), m.clone()],
        ))?;
    }
    if !missing_users.is_empty() {
        return Err(format!(
            "group {}: no such user(s) {}; not added",
            g.name,
            missing_users.join(", ")
        ));
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use runner::{Output, Recorder};
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
                format!(
                    "/usr/sbin/chroot {root} /usr/sbin/useradd -G devs -m -d /export/home/bob bob"
                ),
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
}
