//! zones: non-global zones configured with `zonecfg` from a description, installed with
//! `zoneadm install` (from a zone image with `-a`) and booted, idempotently.
//!
//! State comes from `zoneadm list -cp` and, for a zone that exists, `zonecfg -z NAME
//! export`. A zone that is running as described needs nothing; an installed (or ready)
//! one is booted; a configured one is installed and booted, after being configured again
//! if its configuration differs (nothing is installed yet, so nothing is lost). An
//! installed zone whose configuration differs is not touched: its change fails and says
//! what differs, because changing an installed zone (its brand cannot change at all, a
//! new zonepath needs `zoneadm move`, the rest takes effect at its next boot) is the
//! administrator's call. An `incomplete` zone (an install or uninstall that did not
//! finish) fails with what to do about it.
//!
//! illumos traps, from zonecfg's source (`usr/src/cmd/zonecfg/zonecfg.c`):
//! - The subcommands go as one `;`-separated argument, the form zonecfg(8) shows. `-f -`
//!   is no better: zonecfg treats a command file of `-` as interactive input, which does
//!   not stop at an error either; `-f /dev/stdin` is refused, the file must be regular;
//!   and a real command file would be one more thing to create and clean up in the
//!   global zone. On the command line, the whole configuration also shows in the
//!   recorded action, which is what the tests pin.
//! - zonecfg commits what it has when a session ends, also after a failed subcommand, so
//!   a failed configuration can leave a half-configured zone behind. A new zone whose
//!   configuration failed is therefore deleted again (`zonecfg -z NAME delete -F`).
//! - `zoneadm install` can take many minutes (a package install): the command gets an
//!   hour, and its change says so (`timeout_secs`), so the daemon's apply call gets that
//!   hour on top of `plugins.apply_timeout_secs`.
//!
//! Zones act on the running system, so under an alternate root every change is skipped.

mod check;
pub mod text;

use std::time::Duration;

use runner::Cmd;
use serde::{Deserialize, Serialize};

use super::{or_default, Ctx, Outcome, Planned, Plugin, PluginError};
use crate::schema::Zone;
pub use check::check;
use text::{differences, parse_export, parse_list, zonecfg_script, zonepath_of, State};

pub struct Zones;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default, deserialize_with = "or_default")]
    pub zones: Vec<Zone>,
}

/// One step for one zone, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// Shown in the plan, nothing run; the reason.
    Skip {
        why: String,
    },
    /// Fails with this message: what is in the way and what to do about it.
    Fail {
        message: String,
    },
    /// `zonecfg`; `replace` for a configured zone whose configuration differs.
    Configure {
        zone: String,
        replace: bool,
    },
    Install {
        zone: String,
    },
    Boot {
        zone: String,
    },
}

const ZONEADM: &str = "/usr/sbin/zoneadm";
const ZONECFG: &str = "/usr/sbin/zonecfg";

/// How long one `zoneadm install` may take.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(3600);

const ALT_ROOT: &str =
    "zones are configured on the running system; not run under an alternate root";

pub fn zonecfg(name: &str, script: &str) -> Cmd {
    Cmd::new(ZONECFG).args(["-z", name, script])
}

pub fn zonecfg_delete(name: &str) -> Cmd {
    Cmd::new(ZONECFG).args(["-z", name, "delete", "-F"])
}

pub fn install(z: &Zone) -> Cmd {
    let mut c = Cmd::new(ZONEADM).args(["-z", z.name.as_str(), "install"]);
    if let Some(img) = &z.image {
        c = c.args(["-a", img.as_str()]);
    }
    c.args(&z.install_args).timeout(INSTALL_TIMEOUT)
}

pub fn boot(name: &str) -> Cmd {
    Cmd::new(ZONEADM).args(["-z", name, "boot"])
}

/// The zone's state right now, read before installing or booting it; `None` in a dry run,
/// where the earlier changes were not made. A zone that is not there is "configured"
/// only in the plan: that its configure change failed is reported here.
fn state_now(ctx: &Ctx, name: &str) -> Result<Option<State>, PluginError> {
    if ctx.dry_run {
        return Ok(None);
    }
    let listed = parse_list(
        &ctx.query(Cmd::new(ZONEADM).args(["list", "-cp"]))?
            .unwrap_or_default(),
    );
    match listed.into_iter().find(|l| l.name == name) {
        Some(l) => Ok(Some(l.state)),
        None => Err(PluginError::Failed(format!(
            "zone {name} is not configured (its configuration failed); not going on with it"
        ))),
    }
}

fn step(z: &Zone, what: &str, summary: String, change: Change) -> Planned<Change> {
    Planned::new("zones", format!("{}/{what}", z.name), summary, change)
}

/// The change, or the reason to skip it when there is one.
fn or_skip(skip: Option<&str>, change: Change) -> Change {
    match skip {
        Some(why) => Change::Skip { why: why.into() },
        None => change,
    }
}

fn fail(message: String) -> Change {
    Change::Fail { message }
}

fn configure_summary(z: &Zone) -> String {
    format!(
        "configure zone {} ({}, {}, {}-IP, {} net, {} dataset)",
        z.name,
        z.brand,
        zonepath_of(z),
        match z.ip_type {
            crate::schema::IpType::Exclusive => "exclusive",
            crate::schema::IpType::Shared => "shared",
        },
        z.networks.len(),
        z.datasets.len()
    )
}

fn install_summary(z: &Zone) -> String {
    match &z.image {
        Some(img) => format!("install zone {} from {img}", z.name),
        None => format!("install zone {}", z.name),
    }
}

/// Install (and boot) changes, or those steps skipped for the reason given.
fn install_and_boot(z: &Zone, out: &mut Vec<Planned<Change>>, skip: Option<&str>) {
    let zone = z.name.clone();
    let install = or_skip(skip, Change::Install { zone: zone.clone() });
    out.push(step(z, "install", install_summary(z), install).timeout(INSTALL_TIMEOUT));
    if z.boot {
        let boot = or_skip(skip, Change::Boot { zone });
        out.push(step(z, "boot", format!("boot zone {}", z.name), boot));
    }
}

impl Plugin for Zones {
    const NAME: &'static str = "zones";
    const KEYS: &'static [&'static str] = &["zones"];

    type Input = Input;
    type Change = Change;

    fn plan(&self, ctx: &Ctx, input: &Input) -> Result<Vec<Planned<Change>>, PluginError> {
        let zones = &input.zones;
        check(zones)?;
        let mut out = Vec::new();
        if zones.is_empty() {
            return Ok(out);
        }
        if !ctx.live() {
            let skip = || Change::Skip {
                why: ALT_ROOT.into(),
            };
            for z in zones {
                out.push(step(z, "configure", configure_summary(z), skip()));
                install_and_boot(z, &mut out, Some(ALT_ROOT));
            }
            return Ok(out);
        }
        let listed = parse_list(
            &ctx.query(Cmd::new(ZONEADM).args(["list", "-cp"]))?
                .unwrap_or_default(),
        );
        for z in zones {
            let configure = |replace| Change::Configure {
                zone: z.name.clone(),
                replace,
            };
            let Some(l) = listed.iter().find(|l| l.name == z.name) else {
                tracing::debug!(zone = %z.name, "not configured yet");
                out.push(step(z, "configure", configure_summary(z), configure(false)));
                install_and_boot(z, &mut out, None);
                continue;
            };
            tracing::debug!(zone = %z.name, state = l.state.as_str(), "exists");
            let diffs = match &l.state {
                State::Configured | State::Installed | State::Ready | State::Running => ctx
                    .query(Cmd::new(ZONECFG).args(["-z", z.name.as_str(), "export"]))?
                    .map(|t| differences(z, &parse_export(&t)))
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            match &l.state {
                State::Configured if !diffs.is_empty() => {
                    out.push(step(
                        z,
                        "configure",
                        format!(
                            "configure zone {} again (configured, not installed; {})",
                            z.name,
                            diffs.join("; ")
                        ),
                        configure(true),
                    ));
                    install_and_boot(z, &mut out, None);
                }
                State::Configured => install_and_boot(z, &mut out, None),
                State::Installed | State::Ready | State::Running if !diffs.is_empty() => {
                    out.push(step(
                        z,
                        "conflict",
                        format!("zone {} differs from its description", z.name),
                        fail(format!(
                            "zone {} is {} and its configuration differs from the description: {}. \
                             sysconfig reconfigures only zones that are not installed yet: change it with \
                             `zonecfg -z {}` (it takes effect when the zone boots next), or uninstall and \
                             delete the zone to have it created as described",
                            z.name, l.state.as_str(), diffs.join("; "), z.name
                        )),
                    ));
                }
                State::Installed | State::Ready if z.boot => {
                    let boot = Change::Boot {
                        zone: z.name.clone(),
                    };
                    out.push(step(z, "boot", format!("boot zone {}", z.name), boot));
                }
                State::Installed | State::Ready | State::Running => {}
                State::Incomplete => out.push(step(
                    z,
                    "incomplete",
                    format!("zone {} is incomplete", z.name),
                    fail(format!(
                        "zone {name} is incomplete: an install or uninstall of it did not finish. \
                         Look at its install log (under {path}), then `zoneadm -z {name} uninstall -F` \
                         returns it to the configured state and the next sysconfig apply installs it again",
                        name = z.name, path = l.zonepath
                    )),
                )),
                other => out.push(step(
                    z,
                    "state",
                    format!("zone {} is {}", z.name, other.as_str()),
                    fail(format!(
                        "zone {} is {}; sysconfig leaves a zone alone while it changes state or is \
                         mounted for maintenance: run sysconfig apply again once it is installed or running",
                        z.name, other.as_str()
                    )),
                )),
            }
        }
        Ok(out)
    }

    fn apply(&self, ctx: &Ctx, input: &Input, c: &Change) -> Result<Outcome, PluginError> {
        let name = match c {
            Change::Skip { why } => return Ok(Outcome::Skipped(why.clone())),
            Change::Fail { message } => return Err(PluginError::Failed(message.clone())),
            Change::Configure { zone, .. } | Change::Install { zone } | Change::Boot { zone } => {
                zone
            }
        };
        let z = input
            .zones
            .iter()
            .find(|z| z.name == *name)
            .ok_or_else(|| PluginError::NotDesired(format!("zone {name:?}")))?;
        match c {
            Change::Configure { replace, .. } => {
                if let Err(e) = ctx.run(zonecfg(&z.name, &zonecfg_script(z, *replace))) {
                    if *replace {
                        return Err(e);
                    }
                    // zonecfg saved whatever it had before the failure: remove it, so the
                    // next run starts from no zone rather than from a partial one.
                    return Err(PluginError::Failed(
                        match ctx.run(zonecfg_delete(&z.name)) {
                            Ok(_) => format!("{e} (the partial configuration was deleted)"),
                            Err(d) => {
                                tracing::warn!(zone = %z.name, "cannot delete a partial configuration: {d}");
                                format!("{e}; deleting its partial configuration failed too: {d}")
                            }
                        },
                    ));
                }
            }
            Change::Install { .. } => {
                // After a failed configure (or anything else that changed the zone since
                // the plan) zoneadm would only add a confusing second error.
                match state_now(ctx, &z.name)? {
                    None | Some(State::Configured) => {}
                    Some(State::Installed | State::Ready | State::Running) => {
                        return Ok(Outcome::Done)
                    }
                    Some(s) => {
                        return Err(PluginError::Failed(format!(
                            "zone {} is {}, not configured; not installing it",
                            z.name,
                            s.as_str()
                        )))
                    }
                }
                if let Some(img) = &z.image {
                    if !ctx.dry_run && !ctx.root.exists(img)? {
                        return Err(PluginError::Failed(format!(
                            "zone {}: image {img} does not exist",
                            z.name
                        )));
                    }
                }
                ctx.run(install(z))?;
            }
            Change::Boot { .. } => match state_now(ctx, &z.name)? {
                None | Some(State::Installed | State::Ready) => {
                    ctx.run(boot(&z.name))?;
                }
                Some(State::Running) => {}
                Some(s) => {
                    return Err(PluginError::Failed(format!(
                        "zone {} is {}, not installed; not booting it",
                        z.name,
                        s.as_str()
                    )))
                }
            },
            // Answered before the zone was looked up.
            Change::Skip { .. } | Change::Fail { .. } => {}
        }
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests;
