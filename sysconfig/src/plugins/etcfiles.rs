//! Reading /etc/passwd, /etc/group and /etc/shadow inside a root, and rewriting one
//! shadow entry.

use super::{Ctx, PluginError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

pub fn passwd(ctx: &Ctx) -> Result<Vec<PasswdEntry>, PluginError> {
    let text = ctx.read("/etc/passwd")?.unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7).then(|| PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().unwrap_or(u32::MAX),
                gid: f[3].parse().unwrap_or(u32::MAX),
                gecos: f[4].to_string(),
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect())
}

pub fn user(ctx: &Ctx, name: &str) -> Result<Option<PasswdEntry>, PluginError> {
    Ok(passwd(ctx)?.into_iter().find(|e| e.name == name))
}

/// A user name or number to a uid.
pub fn uid(ctx: &Ctx, who: &str) -> Result<u32, PluginError> {
    if let Ok(n) = who.parse() {
        return Ok(n);
    }
    match user(ctx, who)? {
        Some(e) => Ok(e.uid),
        // root is uid 0 even in a root without /etc/passwd yet.
        None if who == "root" => Ok(0),
        None => Err(PluginError::Failed(format!(
            "no user `{who}` in /etc/passwd"
        ))),
    }
}

/// A group name or number to a gid.
pub fn gid(ctx: &Ctx, who: &str) -> Result<u32, PluginError> {
    if let Ok(n) = who.parse() {
        return Ok(n);
    }
    let text = ctx.read("/etc/group")?.unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == who)
                .then(|| f[2].parse().ok())
                .flatten()
        })
        .or((who == "root").then_some(0))
        .ok_or_else(|| PluginError::NoSuch {
            kind: "group",
            name: who.into(),
            file: "/etc/group",
        })
}

/// The supplementary groups `name` is listed in, sorted.
pub fn groups_of(ctx: &Ctx, name: &str) -> Result<Vec<String>, PluginError> {
    let text = ctx.read("/etc/group")?.unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[3].split(',').any(|m| m.trim() == name)).then(|| f[0].to_string())
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The members of group `name` (`None` when there is no such group).
pub fn group_members(ctx: &Ctx, name: &str) -> Result<Option<Vec<String>>, PluginError> {
    let text = ctx.read("/etc/group")?.unwrap_or_default();
    Ok(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name).then(|| {
            f.get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        })
    }))
}

/// The password field of a shadow entry.
pub fn shadow_hash(ctx: &Ctx, name: &str) -> Result<Option<String>, PluginError> {
    let text = ctx.read("/etc/shadow")?.unwrap_or_default();
    Ok(text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name)).then(|| f.next().unwrap_or("").to_string())
    }))
}

/// /etc/shadow with `name`'s password field set to `hash` and its last-change day set to
/// `today`. `None` when the user has no entry.
pub fn shadow_with(text: &str, name: &str, hash: &str, today: u64) -> Option<String> {
    let mut found = false;
    let mut out = String::new();
    for l in text.lines() {
        let mut f: Vec<String> = l.split(':').map(String::from).collect();
        if f.first().map(String::as_str) == Some(name) && f.len() >= 3 {
            f[1] = hash.to_string();
            f[2] = today.to_string();
            found = true;
        }
        out.push_str(&f.join(":"));
        out.push('\n');
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_entry_is_replaced_in_place() {
        let t = "root:$5$x:19000::::::\nann:*LK*:::::::\n";
        assert_eq!(
            shadow_with(t, "ann", "$6$s$h", 20000).unwrap(),
            "root:$5$x:19000::::::\nann:$6$s$h:20000::::::\n"
        );
        assert!(shadow_with(t, "bob", "$6$", 1).is_none());
    }
}
