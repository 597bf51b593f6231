//! The plugin side: what every shipped `sysconfig-plugin-*` program shares. A plugin
//! implements [`Plugin`] with its own input and change types; [`Adapter`] turns it into a
//! protocol handler, converting those from and to the protocol's JSON; [`main`] is the
//! whole `main` of a plugin program. Commands go through the runner and files through
//! [`Root`], both via [`Ctx`], which records every action and, in a dry run, performs no
//! change at all.

mod adapter;
pub mod dns;
mod error;
pub mod etcfiles;
pub mod files;
pub mod hostname;
pub mod network;
pub mod storage;
pub mod timezone;
pub mod users;
pub mod zones;

use std::cell::RefCell;
use std::path::Path;

use runner::{Cmd, Output, RunError, Runner};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use adapter::{change_of, input_of, or_default, Adapter, Planned};
pub use error::PluginError;

use crate::rootfs::Root;

/// What running one change can end in besides success.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Not applicable here; the message says why.
    Skipped(String),
}

/// A plugin: the keys it owns, its slice of the desired state as a Rust type, and the
/// changes it plans and applies as another. The [`Adapter`] reads `Input` from the
/// protocol's `desired` (an ill-typed value fails the call, naming key and value) and
/// carries each `Change` as the `data` of a protocol change, so plan hands apply exactly
/// what it computed.
pub trait Plugin {
    const NAME: &'static str;
    /// The top-level keys of the desired state this plugin owns: the fields of `Input`.
    const KEYS: &'static [&'static str];
    /// The plugin's keys of the desired state; an absent key is left alone.
    type Input: DeserializeOwned;
    /// What plan hands to apply. It is logged and printed: no secrets in it (apply finds
    /// those in the input).
    type Change: Serialize + DeserializeOwned;
    fn plan(
        &self,
        ctx: &Ctx,
        input: &Self::Input,
    ) -> Result<Vec<Planned<Self::Change>>, PluginError>;
    fn apply(
        &self,
        ctx: &Ctx,
        input: &Self::Input,
        change: &Self::Change,
    ) -> Result<Outcome, PluginError>;
}

/// Everything a plugin does to the system goes through here.
pub struct Ctx<'r> {
    pub root: Root,
    pub dry_run: bool,
    runner: &'r dyn Runner,
    actions: RefCell<Vec<String>>,
}

impl<'r> Ctx<'r> {
    pub fn new(root: Root, dry_run: bool, runner: &'r dyn Runner) -> Self {
        Ctx {
            root,
            dry_run,
            runner,
            actions: RefCell::new(Vec::new()),
        }
    }

    /// True when the root is the running system, so commands that act on the kernel
    /// (ipadm, route, swap, zpool) make sense.
    pub fn live(&self) -> bool {
        self.root.is_live()
    }

    fn note(&self, s: String) {
        self.actions.borrow_mut().push(s);
    }

    pub fn take_actions(&self) -> Vec<String> {
        std::mem::take(&mut *self.actions.borrow_mut())
    }

    /// Runs a command that changes the system (recorded; not run in a dry run).
    pub fn run(&self, cmd: Cmd) -> Result<Output, PluginError> {
        let line = cmd.display();
        if self.dry_run {
            self.note(format!("would run: {line}"));
            return Ok(Output::ok(""));
        }
        self.note(format!("run: {line}"));
        Ok(self.runner.run(&cmd)?)
    }

    /// Runs a read-only query, also in a dry run. In a dry run a query tool that is not
    /// installed (planning on a non-illumos host) answers `None` instead of failing.
    pub fn query(&self, cmd: Cmd) -> Result<Option<String>, PluginError> {
        match self.runner.run(&cmd) {
            Ok(o) => Ok(Some(o.stdout_str())),
            Err(RunError::Spawn { source, .. })
                if self.dry_run && source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn read(&self, path: &str) -> Result<Option<String>, PluginError> {
        Ok(self.root.read_string(path)?)
    }

    /// Writes a file atomically inside the root (recorded; not written in a dry run).
    pub fn write(
        &self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), PluginError> {
        let who = owner.map(|(u, g)| format!(" {u}:{g}")).unwrap_or_default();
        if self.dry_run {
            self.note(format!("would write: {path} ({mode:04o}{who})"));
            return Ok(());
        }
        self.note(format!("write: {path} ({mode:04o}{who})"));
        if let Some(parent) = Path::new(path).parent() {
            if !self.root.exists(parent)? {
                self.root.create_dir_all(parent, 0o755)?;
            }
        }
        Ok(self.root.write_atomic(path, bytes, mode, owner)?)
    }

    /// Creates a directory with mode and owner (recorded; not made in a dry run).
    pub fn mkdir(
        &self,
        path: &str,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), PluginError> {
        if self.dry_run {
            self.note(format!("would create directory: {path} ({mode:04o})"));
            return Ok(());
        }
        self.note(format!("create directory: {path} ({mode:04o})"));
        self.root.create_dir_all(path, mode)?;
        self.root.set_mode(path, mode)?;
        if let Some((u, g)) = owner {
            self.root.set_owner(path, u, g)?;
        }
        Ok(())
    }
}

/// The `main` of a plugin program: serve the protocol on stdin/stdout with the system
/// runner. Plugins take no arguments, so `--help` and friends are answered by the
/// describe call instead.
pub fn main<P: Plugin>(plugin: P) -> std::process::ExitCode {
    let runner =
        runner::SystemRunner::new().with_default_timeout(std::time::Duration::from_secs(300));
    let adapter = Adapter {
        plugin,
        runner: &runner,
    };
    let stdin = std::io::stdin();
    match crate::protocol::serve(&adapter, stdin.lock(), std::io::stdout().lock()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sysconfig-plugin-{}: {e}", P::NAME);
            std::process::ExitCode::FAILURE
        }
    }
}

/// The shipped plugins, by name.
pub const SHIPPED: &[&str] = &[
    "dns", "files", "hostname", "network", "storage", "timezone", "users", "zones",
];

/// The `main` of the multi-call program `sysconfig-plugins`. Installed once, with a
/// `sysconfig-plugin-NAME` link to it per plugin, it serves the plugin its link is named
/// after: one copy of the shared code instead of one per plugin, which is how a release
/// image keeps the plugins small.
pub fn main_by_name() -> std::process::ExitCode {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.strip_prefix(crate::pluginhost::PREFIX) {
        Some("dns") => main(dns::Dns),
        Some("files") => main(files::Files),
        Some("hostname") => main(hostname::Hostname),
        Some("network") => main(network::Network),
        Some("storage") => main(storage::Storage),
        Some("timezone") => main(timezone::Timezone),
        Some("users") => main(users::Users),
        Some("zones") => main(zones::Zones),
        _ => {
            eprintln!(
                "sysconfig-plugins: start me through a link named {}NAME, NAME one of: {}",
                crate::pluginhost::PREFIX,
                SHIPPED.join(", ")
            );
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
pub mod testing {
    //! Runs a plugin in-process against a temporary root with a recording runner.
    use super::*;
    use crate::protocol::{ApplyParams, Change, ChangeResult, Handler, PlanParams};
    use runner::Recorder;
    use serde_json::Value;

    /// Tests that give files to other users need root; elsewhere they say they skipped.
    pub fn root_or_skip(test: &str) -> bool {
        let root = rustix::process::geteuid().is_root();
        if !root {
            eprintln!("SKIPPED {test}: needs root to change file owners");
        }
        root
    }

    /// A desired state in JSON as the plugin's input, as the adapter reads it.
    pub fn input<P: Plugin>(_: &P, desired: Value) -> P::Input {
        match input_of(desired.as_object().expect("a JSON object")) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn plan<P: Plugin>(
        p: &P,
        root: &Path,
        rec: &Recorder,
        desired: Value,
    ) -> Result<Vec<Change>, String> {
        let a = Adapter {
            plugin: p,
            runner: rec,
        };
        a.plan(PlanParams {
            root: root.to_path_buf(),
            desired: desired.as_object().cloned().unwrap_or_default(),
        })
        .map(|r| r.changes)
        .map_err(|e| e.to_string())
    }

    pub fn apply<P: Plugin>(
        p: &P,
        root: &Path,
        rec: &Recorder,
        desired: Value,
        dry_run: bool,
    ) -> Result<Vec<ChangeResult>, String> {
        let changes = plan(p, root, rec, desired.clone())?;
        let a = Adapter {
            plugin: p,
            runner: rec,
        };
        a.apply(ApplyParams {
            root: root.to_path_buf(),
            dry_run,
            desired: desired.as_object().cloned().unwrap_or_default(),
            changes,
        })
        .map(|r| r.results)
        .map_err(|e| e.to_string())
    }

    impl<P: Plugin> Plugin for &P {
        const NAME: &'static str = P::NAME;
        const KEYS: &'static [&'static str] = P::KEYS;
        type Input = P::Input;
        type Change = P::Change;
        fn plan(
            &self,
            ctx: &Ctx,
            i: &Self::Input,
        ) -> Result<Vec<Planned<Self::Change>>, PluginError> {
            (**self).plan(ctx, i)
        }
        fn apply(
            &self,
            ctx: &Ctx,
            i: &Self::Input,
            c: &Self::Change,
        ) -> Result<Outcome, PluginError> {
            (**self).apply(ctx, i, c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each key a plugin describes is a field of its input, and its input refuses keys
    /// it does not own.
    fn keys_are_input_fields<P: Plugin>(_: P) {
        use serde_json::{Map, Value};
        for k in P::KEYS {
            let m = Map::from_iter([(k.to_string(), Value::Null)]);
            if let Err(e) = input_of::<P::Input>(&m) {
                panic!("{}: key {k}: {e}", P::NAME);
            }
        }
        let other = Map::from_iter([("not_a_key".to_string(), Value::Bool(true))]);
        let e = input_of::<P::Input>(&other).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("not_a_key = true: unknown field")),
            "{}: {e:?}",
            P::NAME
        );
    }

    #[test]
    fn every_shipped_plugin_reads_exactly_its_keys() {
        keys_are_input_fields(dns::Dns);
        keys_are_input_fields(files::Files);
        keys_are_input_fields(hostname::Hostname);
        keys_are_input_fields(network::Network);
        keys_are_input_fields(storage::Storage);
        keys_are_input_fields(timezone::Timezone);
        keys_are_input_fields(users::Users);
        keys_are_input_fields(zones::Zones);
    }

    #[test]
    fn a_missing_query_tool_is_nothing_in_a_dry_run_and_an_error_otherwise() {
        let r = runner::SystemRunner::new();
        let dry = Ctx::new(Root::new("/"), true, &r);
        let q = || Cmd::new("/nonexistent/sbin/ipadm").args(["show-addr", "-p", "-o", "ADDROBJ"]);
        assert_eq!(dry.query(q()).unwrap(), None);
        let real = Ctx::new(Root::new("/"), false, &r);
        let err = real.query(q()).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot start `/nonexistent/sbin/ipadm show-addr"),
            "{err}"
        );
        assert_eq!(
            dry.query(Cmd::new("/bin/echo").arg("hi"))
                .unwrap()
                .as_deref(),
            Some("hi\n")
        );
    }

    #[test]
    fn dry_run_records_and_does_nothing() {
        let t = tempfile::tempdir().unwrap();
        let rec = runner::Recorder::new();
        let ctx = Ctx::new(Root::new(t.path()), true, &rec);
        ctx.write("/etc/x", b"x", 0o600, Some((1, 2))).unwrap();
        ctx.mkdir("/d", 0o700, None).unwrap();
        ctx.run(Cmd::new("/usr/sbin/zfs").args(["create", "a b"]))
            .unwrap();
        assert_eq!(
            ctx.take_actions(),
            [
                "would write: /etc/x (0600 1:2)",
                "would create directory: /d (0700)",
                "would run: /usr/sbin/zfs create 'a b'"
            ]
        );
        assert!(rec.lines().is_empty());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }
}
