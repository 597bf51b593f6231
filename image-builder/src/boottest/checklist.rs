//! Checks as data: a JSON checklist of shell commands run on the guest's console, each
//! with the exit status and output it must produce.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A list of checks, run in order. Every check runs even after an earlier one failed, so
/// clean-up checks at the end of a list always get their turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checklist {
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Unique within a run: names the check in the report.
    pub name: String,
    /// One line of POSIX shell, run as the logged-in user.
    pub command: String,
    #[serde(default)]
    pub expect: Expect,
    /// Seconds the command may take.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

fn default_timeout() -> u64 {
    60
}

/// What a passing check produces. Every field given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// The exit status; `null` accepts any.
    pub status: Option<i32>,
    /// Strings the output must contain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<String>,
    /// Strings the output must not contain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// The whole output, leading and trailing white space ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// Some line of the output, with its white space trimmed, starts with this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_starts_with: Option<String>,
    /// The output is empty (white space aside).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub empty: bool,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            status: Some(0),
            contains: Vec::new(),
            excludes: Vec::new(),
            equals: None,
            line_starts_with: None,
            empty: false,
        }
    }
}

impl Expect {
    /// Why `status` and `output` do not meet the expectation, or `None` when they do.
    pub fn mismatch(&self, status: i32, output: &str) -> Option<String> {
        let mut why = Vec::new();
        if let Some(want) = self.status.filter(|w| *w != status) {
            why.push(format!("exit status {status}, expected {want}"));
        }
        for c in self
            .contains
            .iter()
            .filter(|c| !output.contains(c.as_str()))
        {
            why.push(format!("output lacks {c:?}"));
        }
        for x in self.excludes.iter().filter(|x| output.contains(x.as_str())) {
            why.push(format!("output contains {x:?}"));
        }
        if let Some(e) = self.equals.as_ref().filter(|e| output.trim() != e.trim()) {
            why.push(format!("output is not {e:?}"));
        }
        if let Some(p) = &self.line_starts_with {
            if !output.lines().any(|l| l.trim().starts_with(p.as_str())) {
                why.push(format!("no output line starts with {p:?}"));
            }
        }
        if self.empty && !output.trim().is_empty() {
            why.push("output is not empty".into());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChecklistError {
    #[error("cannot read checklist {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checklist {}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("no built-in checklist {0:?} (known: {known})", known = BUILTIN.join(", "))]
    UnknownBuiltin(String),
}

impl Check {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

impl Checklist {
    pub fn load(path: &Path) -> Result<Checklist, ChecklistError> {
        let text = std::fs::read_to_string(path).map_err(|source| ChecklistError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Checklist::parse(&text).map_err(|message| ChecklistError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Checklist, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let list: Checklist = serde_path_to_error::deserialize(de).map_err(|e| e.to_string())?;
        list.validate()?;
        Ok(list)
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.checks {
            if c.name.trim().is_empty() || c.command.trim().is_empty() {
                return Err("every check needs a name and a command".into());
            }
            if c.command.contains('\n') {
                return Err(format!("check {:?}: the command must be one line", c.name));
            }
            if c.timeout == 0 {
                return Err(format!("check {:?}: timeout must be positive", c.name));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(format!("check {:?} appears twice", c.name));
            }
        }
        Ok(())
    }

    /// Concatenates lists (the order of `--check` flags); a later check with a name
    /// already present is an error, caught by validation.
    pub fn concat(lists: Vec<Checklist>) -> Result<Checklist, String> {
        let all = Checklist {
            checks: lists.into_iter().flat_map(|l| l.checks).collect(),
        };
        all.validate()?;
        Ok(all)
    }

    pub fn builtin(name: &str) -> Result<Checklist, ChecklistError> {
        match name {
            "illumos" => Ok(illumos()),
            "openzfs" => Ok(openzfs()),
            "pool-image" => Ok(pool_image()),
            _ => Err(ChecklistError::UnknownBuiltin(name.into())),
        }
    }
}

/// The names [`Checklist::builtin`] knows.
pub const BUILTIN: &[&str] = &["illumos", "openzfs", "pool-image"];

fn check(name: &str, command: &str, expect: Expect, timeout: u64) -> Check {
    Check {
        name: name.into(),
        command: command.into(),
        expect,
        timeout,
    }
}

const POOL: &str = "ibtest";

/// The mirror test: two 256 MB file vdevs, a mirror pool, a scrub that finds nothing,
/// then the pool and files removed. `make_files` creates both files.
fn mirror_checks(dir: &str, make_files: &str) -> Vec<Check> {
    let (a, b) = (format!("{dir}/{POOL}-a"), format!("{dir}/{POOL}-b"));
    let ok = Expect::default;
    vec![
        check("mirror-files", &make_files.replace("{a}", &a).replace("{b}", &b), ok(), 120),
        check(
            "mirror-create",
            &format!("zpool create {POOL} mirror {a} {b}"),
            ok(),
            120,
        ),
        check("mirror-scrub", &format!("zpool scrub {POOL}"), ok(), 60),
        // `zpool wait` is recent OpenZFS; polling the status works everywhere.
        check(
            "mirror-scrub-wait",
            &format!(
                "while zpool status {POOL} | grep -q 'scrub in progress'; do sleep 1; done; zpool status {POOL}"
            ),
            Expect {
                contains: vec!["scrub repaired 0".into(), "with 0 errors".into()],
                ..ok()
            },
            600,
        ),
        check(
            "mirror-status",
            &format!("zpool status -x {POOL}"),
            Expect {
                contains: vec![format!("pool '{POOL}' is healthy")],
                ..ok()
            },
            60,
        ),
        check("mirror-destroy", &format!("zpool destroy {POOL}"), ok(), 120),
        check(
            "mirror-cleanup",
            &format!("rm -f {a} {b}; ! ls {a} {b} 2>/dev/null"),
            ok(),
            60,
        ),
    ]
}

/// The default list for illumos images.
pub fn illumos() -> Checklist {
    let ok = Expect::default;
    let mut checks = vec![
        check(
            "zpool-list",
            "zpool list -H -o name,health",
            Expect {
                contains: vec!["ONLINE".into()],
                ..ok()
            },
            60,
        ),
        // Lists services that are enabled but not running; nothing printed is healthy.
        check(
            "services",
            "svcs -x",
            Expect {
                empty: true,
                ..ok()
            },
            120,
        ),
        check(
            "sysconfig",
            "svcs -H -o state svc:/system/installer/sysconfig",
            Expect {
                equals: Some("online".into()),
                ..ok()
            },
            60,
        ),
        // The pool holding / must boot the boot environment mounted there.
        check(
            "bootfs",
            "r=$(zfs list -H -o name /); b=$(zpool get -H -o value bootfs \"${r%%/*}\"); echo \"root=$r bootfs=$b\"; [ \"$r\" = \"$b\" ]",
            ok(),
            60,
        ),
    ];
    // mkfile is illumos' way to make a file of a given size (truncate is not in base).
    checks.extend(mirror_checks("/var/tmp", "mkfile 256m {a} {b}"));
    Checklist { checks }
}

/// The mirror test alone, for OpenZFS on Linux.
pub fn openzfs() -> Checklist {
    let mut checks = vec![check("zfs-module", "zpool list", Expect::default(), 60)];
    checks.extend(mirror_checks("/var/tmp", "truncate -s 256M {a} {b}"));
    Checklist { checks }
}

/// The in-core name [`pool_image`] imports the image's pool under.
pub const IMAGE_POOL: &str = "ibimage";

/// A pool image attached as a data disk to an OpenZFS (Linux) guest, such as the zfs-vm
/// guest in console mode: the image's pool found on the guest's disks, imported
/// read-only, unmounted, under the temporary name `ibimage` (the on-disk name is left
/// alone), its health, `bootfs`, boot environment and datasets looked at, the boot
/// environment mounted read-only for a look at its files, and the pool exported again.
pub fn pool_image() -> Checklist {
    let ok = Expect::default;
    let p = IMAGE_POOL;
    let bootfs = format!("b=$(zpool get -H -o value bootfs {p})");
    let checks = vec![
        // The guest has no udev, so no /dev/disk: every block device in /dev is scanned.
        check(
            "image-find",
            "zpool import -d /dev",
            Expect {
                contains: vec!["state: ONLINE".into()],
                ..ok()
            },
            120,
        ),
        check(
            "image-import",
            &format!(
                "n=$(zpool import -d /dev | sed -n 's/^ *pool: //p' | head -n 1) && zpool import -d /dev -N -R /mnt/{p} -o readonly=on -t \"$n\" {p} && echo \"imported $n as {p}\""
            ),
            Expect {
                contains: vec![format!(" as {p}")],
                ..ok()
            },
            120,
        ),
        check(
            "image-health",
            &format!("zpool list -H -o name,health {p}"),
            Expect {
                equals: Some(format!("{p}\tONLINE")),
                ..ok()
            },
            60,
        ),
        // bootfs names a boot environment under ROOT that exists.
        check(
            "image-bootfs",
            &format!("{bootfs}; echo \"bootfs=$b\"; zfs list -H -o name \"$b\""),
            Expect {
                contains: vec![format!("bootfs={p}/ROOT/")],
                ..ok()
            },
            60,
        ),
        check(
            "image-root",
            &format!("zfs get -H -o property,value canmount,mountpoint {p}/ROOT"),
            Expect {
                contains: vec!["canmount\toff".into(), "mountpoint\tlegacy".into()],
                ..ok()
            },
            60,
        ),
        // What beadm relies on: noauto, the static policy, a UUID.
        check(
            "image-be",
            &format!(
                "{bootfs}; zfs get -H -o property,value canmount,mountpoint,org.opensolaris.libbe:policy,org.opensolaris.libbe:uuid \"$b\" && u=$(zfs get -H -o value org.opensolaris.libbe:uuid \"$b\") && [ ${{#u}} -eq 36 ]"
            ),
            Expect {
                contains: vec![
                    "canmount\tnoauto".into(),
                    "org.opensolaris.libbe:policy\tstatic".into(),
                ],
                ..ok()
            },
            60,
        ),
        check(
            "image-datasets",
            &format!("zfs list -H -r -o name,canmount,mountpoint {p}"),
            ok(),
            60,
        ),
        check(
            "image-be-files",
            &format!(
                "{bootfs}; mkdir -p /mnt/{p}-be && mount -t zfs -o ro \"$b\" /mnt/{p}-be && ls -1A /mnt/{p}-be && ls -ln /mnt/{p}-be/etc; s=$?; umount /mnt/{p}-be; [ $s -eq 0 ]"
            ),
            ok(),
            120,
        ),
        check(
            "image-export",
            &format!("zpool export {p} && ! zpool list {p} 2>/dev/null"),
            ok(),
            120,
        ),
    ];
    Checklist { checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_and_rejects_bad_lists() {
        let l = Checklist::parse(r#"{"checks":[{"name":"a","command":"true"}]}"#).unwrap();
        assert_eq!(l.checks[0].expect.status, Some(0));
        assert_eq!(l.checks[0].timeout, 60);
        let any = Checklist::parse(
            r#"{"checks":[{"name":"a","command":"false","expect":{"status":null,"empty":true}}]}"#,
        )
        .unwrap();
        assert_eq!(any.checks[0].expect.mismatch(1, "\n"), None);
        for bad in [
            r#"{"checks":[{"name":"a","command":"x"},{"name":"a","command":"y"}]}"#,
            r#"{"checks":[{"name":"","command":"x"}]}"#,
            r#"{"checks":[{"name":"a","command":"x","timeout":0}]}"#,
            r#"{"checks":[{"name":"a","command":"x","expect":{"regex":"."}}]}"#,
        ] {
            assert!(Checklist::parse(bad).is_err(), "{bad}");
        }
        let e = Checklist::parse(r#"{"checks":[{"name":"a","command":7}]}"#).unwrap_err();
        assert!(e.contains("checks[0].command"), "{e}");
    }

    #[test]
    fn mismatch_explains_every_failed_expectation() {
        let e = Expect {
            contains: vec!["ONLINE".into()],
            excludes: vec!["DEGRADED".into()],
            line_starts_with: Some("rpool/ROOT/".into()),
            ..Expect::default()
        };
        assert_eq!(e.mismatch(0, "x ONLINE\n  rpool/ROOT/oi\n"), None);
        let why = e.mismatch(1, "DEGRADED\n").unwrap();
        assert_eq!(
            why,
            "exit status 1, expected 0; output lacks \"ONLINE\"; output contains \"DEGRADED\"; \
             no output line starts with \"rpool/ROOT/\""
        );
        let eq = Expect {
            equals: Some("online".into()),
            ..Expect::default()
        };
        assert_eq!(eq.mismatch(0, " online\n"), None);
        assert!(eq.mismatch(0, "maintenance\n").is_some());
    }

    #[test]
    fn builtin_lists_are_valid_and_clean_up_after_themselves() {
        for name in BUILTIN {
            let l = Checklist::builtin(name).unwrap();
            l.validate().unwrap();
            let last = l.checks.last().unwrap();
            let cleanup = if *name == "pool-image" {
                "image-export"
            } else {
                "mirror-cleanup"
            };
            assert_eq!(last.name, cleanup);
            let text = serde_json::to_string(&l).unwrap();
            assert_eq!(Checklist::parse(&text).unwrap(), l);
        }
        let il = illumos();
        let create = il
            .checks
            .iter()
            .find(|c| c.name == "mirror-create")
            .unwrap();
        assert_eq!(
            create.command,
            "zpool create ibtest mirror /var/tmp/ibtest-a /var/tmp/ibtest-b"
        );
        assert!(Checklist::builtin("nope").is_err());
    }
}
