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
use serde::{Deserialize, Serialize};

use super::etcfiles;
use super::{or_default, Ctx, Outcome, Planned, Plugin, PluginError};
use crate::schema::{FileSpec, Group, User};

pub struct Users;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default, deserialize_with = "or_default")]
    pub users: Vec<User>,
    #[serde(default, deserialize_with = "or_default")]
    pub groups: Vec<Group>,
    /// Files written after the users exist (cloud-init's `write_files` with `defer`).
    #[serde(default, deserialize_with = "or_default")]
    pub deferred_files: Vec<FileSpec>,
}

/// One change; users and groups by name (their password hashes stay in the input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    CreateGroup { group: String },
    GroupMembers { group: String },
    Create { user: String },
    Modify { user: String },
    Password { user: String },
    SshKeys { user: String },
    Sudo,
    DeferredFile { index: usize },
}

/// Default homes live under /export/home: /home is the automounter's on illumos, and
/// `useradd -m` cannot create a directory there.
pub fn home_of(u: &User) -> String {
    u.home
        .clone()
        .unwrap_or_else(|| format!("/export/home/{}", u.name))
}

/// A user or group name this tool creates: a lowercase letter or `_` first, then lowercase
/// letters, digits, `_`, `-` and `.`, at most 32 bytes. The cloud-config source drops names
/// that are not; this plugin refuses them again, as its input may come from elsewhere.
pub fn valid_name(n: &str) -> bool {
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
pub fn usermod_args(
    ctx: &Ctx,
    u: &User,
    e: &etcfiles::PasswdEntry,
) -> Result<Vec<String>, PluginError> {
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

fn find<'a>(users: &'a [User], name: &str) -> Result<&'a User, PluginError> {
    users
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(|| PluginError::NotDesired(format!("user {name}")))
}

impl Plugin for Users {
    const NAME: &'static str = "users";
    const KEYS: &'static [&'static str] = &["users", "groups", "deferred_files"];

    type Input = Input;
    type Change = Change;

    fn plan(&self, ctx: &Ctx, input: &Input) -> Result<Vec<Planned<Change>>, PluginError> {
        let Input {
            users,
            groups,
            deferred_files: deferred,
        } = input;
        let mut out = Vec::new();
        // Groups first: useradd -G needs them.
        for g in groups {
            if !valid_name(&g.name) {
                return Err(PluginError::Invalid {
                    what: "group name".into(),
                    value: g.name.clone(),
                    reason: "is not valid".into(),
                });
            }
            if etcfiles::group_members(ctx, &g.name)?.is_none() {
                out.push(Planned::new(
                    "groups",
                    format!("group/{}/create", g.name),
                    format!("create group {}", g.name),
                    Change::CreateGroup {
                        group: g.name.clone(),
                    },
                ));
            }
        }
        for u in users {
            if !valid_name(&u.name) {
                return Err(PluginError::Invalid {
                    what: "user name".into(),
                    value: u.name.clone(),
                    reason: "is not valid".into(),
                });
            }
            if let Some(h) = &u.password_hash {
                if !h.starts_with('$') || h.contains(':') || h.contains('\n') {
                    return Err(PluginError::Failed(format!(
                        "user {}: password_hash must be a crypt(3) string",
                        u.name
                    )));
                }
            }
            let existing = etcfiles::user(ctx, &u.name)?;
            match &existing {
                None => out.push(Planned::new(
                    "users",
                    format!("{}/create", u.name),
                    format!("create user {}", u.name),
                    Change::Create {
                        user: u.name.clone(),
                    },
                )),
                Some(e) => {
                    let args = usermod_args(ctx, u, e)?;
                    if !args.is_empty() {
                        let what: Vec<&str> = args.iter().step_by(2).map(String::as_str).collect();
                        out.push(Planned::new(
                            "users",
                            format!("{}/modify", u.name),
                            format!("usermod {} for {}", what.join(" "), u.name),
                            Change::Modify {
                                user: u.name.clone(),
                            },
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
                    out.push(Planned::new(
                        "users",
                        format!("{}/password", u.name),
                        what,
                        Change::Password {
                            user: u.name.clone(),
                        },
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
                    out.push(Planned::new(
                        "users",
                        format!("{}/ssh-keys", u.name),
                        format!("write {} SSH key(s) to {path}", u.ssh_authorized_keys.len()),
                        Change::SshKeys {
                            user: u.name.clone(),
                        },
                    ));
                }
            }
        }
        if let Some(text) = sudoers_text(users) {
            let sudoers = ctx.read("/etc/sudoers")?;
            let include_missing = sudoers.as_deref().is_some_and(|s| {
                !s.lines().any(|l| {
                    let l = l.trim();
                    l == INCLUDEDIR || l == "@includedir /etc/sudoers.d"
                })
            });
            if ctx.read(SUDOERS_D)?.as_deref() != Some(text.as_str()) || include_missing {
                out.push(Planned::new(
                    "users",
                    "sudo",
                    format!(
                        "write the sudo rules of {} user(s) to {SUDOERS_D}",
                        users.iter().filter(|u| !u.sudo.is_empty()).count()
                    ),
                    Change::Sudo,
                ));
            }
        }
        for g in groups {
            let have = etcfiles::group_members(ctx, &g.name)?.unwrap_or_default();
            let missing: Vec<&String> = g.members.iter().filter(|m| !have.contains(m)).collect();
            if !missing.is_empty() {
                out.push(Planned::new(
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
                    Change::GroupMembers {
                        group: g.name.clone(),
                    },
                ));
            }
        }
        for (i, f) in deferred.iter().enumerate() {
            out.extend(
                super::files::plan_file(ctx, "deferred_files", i, f)?
                    .map(|p| p.map(|c| Change::DeferredFile { index: c.index })),
            );
        }
        Ok(out)
    }

    fn apply(&self, ctx: &Ctx, input: &Input, c: &Change) -> Result<Outcome, PluginError> {
        match c {
            Change::DeferredFile { index } => {
                let f = input
                    .deferred_files
                    .get(*index)
                    .ok_or_else(|| PluginError::NotDesired(format!("deferred_files[{index}]")))?;
                super::files::apply_file(ctx, f)
            }
            Change::CreateGroup { group } | Change::GroupMembers { group } => {
                apply_group(ctx, &input.groups, group, c)
            }
            Change::Sudo => apply_sudo(ctx, &input.users),
            Change::Create { user } => {
                ctx.run(useradd(ctx, find(&input.users, user)?))?;
                Ok(Outcome::Done)
            }
            Change::Modify { user } => modify(ctx, find(&input.users, user)?),
            Change::Password { user } => set_password(ctx, find(&input.users, user)?),
            Change::SshKeys { user } => write_keys(ctx, find(&input.users, user)?),
        }
    }
}

/// `usermod` for what differs on an existing user.
fn modify(ctx: &Ctx, u: &User) -> Result<Outcome, PluginError> {
    let name = &u.name;
    let e = etcfiles::user(ctx, name)?
        .ok_or_else(|| PluginError::Failed(format!("user {name} does not exist")))?;
    let mut args = usermod_args(ctx, u, &e)?;
    if args.is_empty() {
        return Ok(Outcome::Done);
    }
    args.push(name.to_string());
    ctx.run(in_root(ctx, "/usr/sbin/usermod", args))?;
    Ok(Outcome::Done)
}

/// The password field of the user's /etc/shadow entry.
fn set_password(ctx: &Ctx, u: &User) -> Result<Outcome, PluginError> {
    let name = &u.name;
    let hash = wanted_password(u)
        .ok_or_else(|| PluginError::NotDesired(format!("the password of user {name}")))?;
    if ctx.dry_run {
        ctx.write("/etc/shadow", b"", 0o400, Some((0, 3)))?;
        return Ok(Outcome::Done);
    }
    let shadow = ctx
        .read("/etc/shadow")?
        .ok_or_else(|| PluginError::MissingFile {
            path: "/etc/shadow".into(),
        })?;
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86400)
        .unwrap_or(0);
    let new = etcfiles::shadow_with(&shadow, name, hash, today)
        .ok_or_else(|| PluginError::Failed(format!("{name} has no /etc/shadow entry")))?;
    // root:sys, as illumos ships it.
    ctx.write("/etc/shadow", new.as_bytes(), 0o400, Some((0, 3)))?;
    Ok(Outcome::Done)
}

/// HOME/.ssh and its authorized_keys, owned by the user.
fn write_keys(ctx: &Ctx, u: &User) -> Result<Outcome, PluginError> {
    let name = &u.name;
    let (home, owner) = match etcfiles::user(ctx, name)? {
        Some(e) => (e.home, Some((e.uid, e.gid))),
        // Only in a dry run can the user still be missing here.
        None if ctx.dry_run => (home_of(u), None),
        None => return Err(PluginError::Failed(format!("user {name} does not exist"))),
    };
    ctx.mkdir(&format!("{home}/.ssh"), 0o700, owner)?;
    ctx.write(
        &format!("{home}/.ssh/authorized_keys"),
        keys_text(u).as_bytes(),
        0o600,
        owner,
    )?;
    Ok(Outcome::Done)
}

/// The sudo drop-in, and the line that makes /etc/sudoers read it.
fn apply_sudo(ctx: &Ctx, users: &[User]) -> Result<Outcome, PluginError> {
    let text = sudoers_text(users).unwrap_or_default();
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
    Ok(Outcome::Done)
}

/// `groupadd` for a new group; `usermod -G` (the member's groups and this one: illumos
/// usermod has no append option, usermod(8)) for each member that exists.
fn apply_group(
    ctx: &Ctx,
    groups: &[Group],
    name: &str,
    c: &Change,
) -> Result<Outcome, PluginError> {
    let g = groups
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| PluginError::NotDesired(format!("group {name}")))?;
    if matches!(c, Change::CreateGroup { .. }) {
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
        return Err(PluginError::Failed(format!(
            "group {}: no such user(s) {}; not added",
            g.name,
            missing_users.join(", ")
        )));
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests;
