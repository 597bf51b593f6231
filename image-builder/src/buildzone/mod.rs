//! `build --in-zone`: run a build inside a build zone, so that builds are isolated from
//! the global zone and from each other.
//!
//! The zone is configured from nothing (`zonecfg create -b`) with the build's root dataset
//! delegated to it and the directories the build reads (the image-builder program, the
//! template tree, `-E` directories) loopback-mounted read-only at their own paths, then
//! installed, booted, and the same `image-builder build` command runs in it through
//! `zlogin`. Outputs are copied out of the zone before it is halted, uninstalled and
//! deleted — after success, after failure and after Ctrl-C. Every step that needs undoing
//! is written to a journal first, so a crashed run's zone is removed by the next run.

mod journal;

use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::{Cmd, RunError, Runner};

use crate::host::{Host, Tool};
pub use journal::{ZoneJournal, ZoneUndo};

/// Where zone journals live when the caller does not say.
pub const DEFAULT_STATE_DIR: &str = "/var/tmp/image-builder/zones";

/// The build zone to create (or reuse) and what it gets from the global zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildZone {
    pub name: String,
    pub brand: String,
    pub zonepath: PathBuf,
    /// The build's root dataset (`-d`), delegated to the zone.
    pub dataset: String,
    /// Global zone directories mounted read-only at the same path inside the zone.
    pub mounts: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("--in-zone needs an illumos host with zones; this is a {0} host")]
    NotIllumos(&'static str),
    #[error("invalid build zone: {0}")]
    Invalid(String),
    #[error(
        "--in-zone cannot build a {target} image: {why}; in a build zone only dataset, \
         zone and (non-hybrid) iso targets build"
    )]
    Target {
        target: &'static str,
        why: &'static str,
    },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("zone {zone} did not reach the multi-user milestone within {secs}s")]
    NotUp { zone: String, secs: u64 },
    #[error("cannot copy outputs out of zone {zone}: {detail}")]
    Copy { zone: String, detail: String },
    #[error("the build in zone {zone} was interrupted")]
    Interrupted { zone: String },
}

/// Refuses, before anything starts, a target a build zone cannot build: they need lofi
/// devices (lofiadm(8): a labelled device "has to be enabled in zone configuration", and the
/// build zone has no device resources) and, for pools, `zpool create` on one.
pub fn zone_can_build(target: Option<&crate::template::load::Target>) -> Result<(), ZoneError> {
    use crate::template::load::Target;
    let (target, why) = match target {
        Some(Target::Pool(_)) => ("pool", "it needs a lofi device and zpool create on it"),
        Some(Target::Ufs(_)) => ("ufs", "it needs a lofi device to make the file system on"),
        Some(Target::Pcfs(_)) => ("pcfs", "it needs a lofi device to make the file system on"),
        Some(Target::Iso(i)) if i.hybrid.is_some() => (
            "hybrid iso",
            "its partition table and boot blocks are written through a lofi device",
        ),
        _ => return Ok(()),
    };
    Err(ZoneError::Target { target, why })
}

impl BuildZone {
    /// Refuses names and paths zonecfg would misread: they go into one command string.
    pub fn validate(&self) -> Result<(), ZoneError> {
        // ZONENAME_MAX is 64 with the terminating NUL: libzonecfg takes 63 characters.
        let name_ok = !self.name.is_empty()
            && self.name.len() < 64
            && self.name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && self.name != "global"
            && !self.name.starts_with("SUNW");
        if !name_ok {
            return Err(ZoneError::Invalid(format!(
                "zone name {:?}: letters, digits, '-', '_' and '.', at most 63, not \"global\" or SUNW*",
                self.name
            )));
        }
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./+:@,".contains(c))
        };
        if !plain(&self.brand) {
            return Err(ZoneError::Invalid(format!("brand {:?}", self.brand)));
        }
        if !self.zonepath.is_absolute() || !plain(&self.zonepath.to_string_lossy()) {
            return Err(ZoneError::Invalid(format!(
                "zonepath {}: an absolute path of plain characters",
                self.zonepath.display()
            )));
        }
        if !plain(&self.dataset) || self.dataset.contains('@') {
            return Err(ZoneError::Invalid(format!("dataset {:?}", self.dataset)));
        }
        for m in &self.mounts {
            if !m.is_absolute() || !plain(&m.to_string_lossy()) || m == Path::new("/") {
                return Err(ZoneError::Invalid(format!(
                    "directory {} cannot be mounted into the zone (absolute, plain characters, not /)",
                    m.display()
                )));
            }
        }
        Ok(())
    }

    /// The zonecfg subcommands, `;`-separated, as one argument.
    pub fn zonecfg_script(&self) -> String {
        let mut s = vec![
            "create -b".to_string(),
            format!("set zonepath={}", self.zonepath.display()),
            format!("set brand={}", self.brand),
            "set autoboot=false".to_string(),
            "add dataset".to_string(),
            format!("set name={}", self.dataset),
            "end".to_string(),
        ];
        for m in &self.mounts {
            s.extend([
                "add fs".to_string(),
                format!("set dir={}", m.display()),
                format!("set special={}", m.display()),
                "set type=lofs".to_string(),
                "add options ro".to_string(),
                "end".to_string(),
            ]);
        }
        s.push("verify".into());
        s.push("commit".into());
        s.join("; ")
    }
}

/// How to run a build in a zone.
pub struct InZone<'a> {
    pub host: Host,
    pub runner: &'a dyn Runner,
    pub zone: BuildZone,
    /// Where the journal of this zone is kept.
    pub state_dir: PathBuf,
    /// How long to wait for the booted zone's multi-user milestone.
    pub boot_wait: Duration,
    /// Pause between two looks at the milestone.
    pub poll: Duration,
}

/// What came of the build inside the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The build's exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// What teardown could not undo (left in the journal for the next run).
    pub teardown_failed: Vec<String>,
}

impl InZone<'_> {
    fn cmd(&self, tool: Tool) -> Cmd {
        Cmd::new(self.host.tool(tool))
    }

    fn zoneadm(&self, verb: &[&str]) -> Cmd {
        self.cmd(Tool::Zoneadm)
            .args(["-z", self.zone.name.as_str()])
            .args(verb)
    }

    /// The state of the zone (`configured`, `installed`, `running` ...), `None` when no
    /// zone of that name is configured.
    pub fn state(&self) -> Result<Option<String>, ZoneError> {
        let out = self
            .runner
            .run(&self.cmd(Tool::Zoneadm).args(["list", "-cp"]))?;
        // id:name:state:zonepath:uuid:brand:ip-type
        Ok(out.stdout_str().lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(1) == Some(&self.zone.name.as_str()))
                .then(|| f.get(2).unwrap_or(&"").to_string())
        }))
    }

    /// Creates (or reuses) the zone, runs `program build ARGS` in it with its output
    /// streamed to ours, copies `output_dir_in_zone` to `copy_to` and tears down what this
    /// run created. Refuses on a host without zones before running anything.
    pub fn run(
        &self,
        program: &Path,
        args: &[String],
        output_dir_in_zone: &Path,
        copy_to: &Path,
    ) -> Result<Finished, ZoneError> {
        if self.host != Host::Illumos {
            return Err(ZoneError::NotIllumos(self.host.name()));
        }
        self.zone.validate()?;
        let mut journal = ZoneJournal::open(&self.state_dir, &self.zone.name)?;
        if !journal.is_empty() {
            let left: Vec<String> = journal.pending().iter().map(ToString::to_string).collect();
            tracing::warn!(
                "zone {}: undoing what an earlier run left: {}",
                self.zone.name,
                left.join(", ")
            );
            let failed = self.teardown(&mut journal);
            if !failed.is_empty() {
                return Err(ZoneError::Invalid(format!(
                    "zone {} is left from an earlier run and could not be removed: {}",
                    self.zone.name,
                    failed.join("; ")
                )));
            }
        }
        let result = self.up(&mut journal).and_then(|()| {
            let code = self.build(program, args)?;
            if copy_to.as_os_str().is_empty() {
                return Ok(code);
            }
            // Outputs go out even after a failed build: its log and record may be there.
            let copied = self.copy_outputs(output_dir_in_zone, copy_to);
            copied.map(|_| code)
        });
        // Teardown runs its own commands even after Ctrl-C.
        let interrupted = runner::interrupt::requested();
        runner::interrupt::clear();
        let teardown_failed = self.teardown(&mut journal);
        match result {
            Ok(code) => Ok(Finished {
                code,
                teardown_failed,
            }),
            Err(ZoneError::Run(RunError::Interrupted { .. })) => Err(ZoneError::Interrupted {
                zone: self.zone.name.clone(),
            }),
            Err(_) if interrupted => Err(ZoneError::Interrupted {
                zone: self.zone.name.clone(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Brings the zone up, journaling each step before it is taken.
    fn up(&self, journal: &mut ZoneJournal) -> Result<(), ZoneError> {
        match self.state()?.as_deref() {
            Some("running") => {
                tracing::info!("zone {}: reusing the running zone", self.zone.name);
                return self.wait_up();
            }
            Some(other) => {
                return Err(ZoneError::Invalid(format!(
                    "zone {} exists in state {other}; use another name, or remove it (zoneadm uninstall, zonecfg delete)",
                    self.zone.name
                )))
            }
            None => {}
        }
        journal.push(ZoneUndo::Delete)?;
        self.runner.run(
            &self
                .cmd(Tool::Zonecfg)
                .args(["-z", self.zone.name.as_str()])
                .arg(self.zone.zonecfg_script()),
        )?;
        journal.push(ZoneUndo::Uninstall)?;
        self.runner.run(
            &self
                .zoneadm(&["install"])
                .timeout(Duration::from_secs(3600)),
        )?;
        journal.push(ZoneUndo::Halt)?;
        self.runner.run(&self.zoneadm(&["boot"]))?;
        self.wait_up()
    }

    fn wait_up(&self) -> Result<(), ZoneError> {
        let start = std::time::Instant::now();
        // Plain non-interactive zlogin (zlogin(1): it runs the utility through su(1M) with
        // the user's login environment); -S is the "safe" mode zlogin(1) reserves for
        // recovering a damaged zone.
        let look = self.cmd(Tool::Zlogin).arg(self.zone.name.as_str()).args([
            "/usr/bin/svcs",
            "-H",
            "-o",
            "state",
            "svc:/milestone/multi-user:default",
        ]);
        loop {
            let out = self.runner.output(&look)?;
            if out.success() && out.stdout_str().trim() == "online" {
                return Ok(());
            }
            if start.elapsed() >= self.boot_wait {
                return Err(ZoneError::NotUp {
                    zone: self.zone.name.clone(),
                    secs: self.boot_wait.as_secs(),
                });
            }
            if runner::interrupt::requested() {
                return Err(ZoneError::Interrupted {
                    zone: self.zone.name.clone(),
                });
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Runs the build in the zone, its output going straight to ours.
    fn build(&self, program: &Path, args: &[String]) -> Result<Option<i32>, ZoneError> {
        // illumos trap: zlogin joins its arguments with spaces and hands the result to the
        // zone's shell, so each argument is quoted here for /bin/sh.
        let mut words = vec![sh_quote(&program.to_string_lossy()), "build".to_string()];
        words.extend(args.iter().map(|a| sh_quote(a)));
        let cmd = self
            .cmd(Tool::Zlogin)
            .arg(self.zone.name.as_str())
            .args(words)
            .passthrough();
        Ok(self.runner.output(&cmd)?.code)
    }

    /// Copies the regular files of the build's output directory out of the zone. The zone
    /// root is read through a confined root: links planted in the zone never lead out.
    fn copy_outputs(&self, in_zone: &Path, to: &Path) -> Result<Vec<String>, ZoneError> {
        let err = |detail: String| ZoneError::Copy {
            zone: self.zone.name.clone(),
            detail,
        };
        let root =
            confine::Root::open(self.zone.zonepath.join("root")).map_err(|e| err(e.to_string()))?;
        std::fs::create_dir_all(to).map_err(|source| ZoneError::Io {
            path: to.to_path_buf(),
            source,
        })?;
        let mut copied = Vec::new();
        for e in root.read_dir(in_zone).map_err(|e| err(e.to_string()))? {
            let name = e.name.to_string_lossy().into_owned();
            let path = in_zone.join(&e.name);
            let meta = root.metadata(&path).map_err(|e| err(e.to_string()))?;
            if name.starts_with('.') || !meta.is_file() {
                continue;
            }
            let mut from = root.open_read(&path).map_err(|e| err(e.to_string()))?;
            let dest = to.join(&name);
            let mut out = std::fs::File::create(&dest).map_err(|source| ZoneError::Io {
                path: dest.clone(),
                source,
            })?;
            std::io::copy(&mut from, &mut out).map_err(|source| ZoneError::Io {
                path: dest.clone(),
                source,
            })?;
            copied.push(name);
        }
        copied.sort();
        Ok(copied)
    }

    /// Undoes the journal newest first: halt, uninstall, delete. Returns what failed.
    fn teardown(&self, journal: &mut ZoneJournal) -> Vec<String> {
        let name = self.zone.name.as_str();
        journal.unwind_with(&|_| false, |undo| {
            let cmd = match undo {
                ZoneUndo::Halt => self.zoneadm(&["halt"]),
                ZoneUndo::Uninstall => self.zoneadm(&["uninstall", "-F"]),
                ZoneUndo::Delete => self.cmd(Tool::Zonecfg).args(["-z", name, "delete", "-F"]),
            };
            self.runner.run(&cmd).map(|_| ()).map_err(|e| e.to_string())
        })
    }
}

/// `s` quoted for a POSIX shell (left bare when it needs no quoting).
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The build's own arguments without the ones that put it in a zone and without the
/// template and `-E` directories (given again, absolute, in `extra`: the zone's working
/// directory is not ours), plus `--no-vm`: what runs inside.
pub fn inner_args(args: &[String], extra: &[String]) -> Vec<String> {
    const WITH_VALUE: &[&str] = &[
        "--in-zone",
        "--zone-brand",
        "--zone-path",
        "--zone-output",
        "--templates",
        "--external-src",
        "-T",
        "-E",
    ];
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if WITH_VALUE.contains(&a.as_str()) {
            skip = true;
            continue;
        }
        let joined = WITH_VALUE.iter().any(|o| {
            if o.starts_with("--") {
                a.starts_with(&format!("{o}="))
            } else {
                a.len() > 2 && a.starts_with(o)
            }
        });
        if !joined {
            out.push(a.clone());
        }
    }
    out.extend(extra.iter().cloned());
    if !out.iter().any(|a| a == "--no-vm") {
        out.push("--no-vm".into());
    }
    out
}
