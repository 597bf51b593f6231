//! Pool operations (`zpool`).

use std::thread;

use runner::{RunError, Runner};

use super::{prop_args, ZfsCli};
use crate::error::{Result, ZfsError};
use crate::name;
use crate::options::{Health, PoolCreate, PoolImport};

pub(super) fn create<R: Runner>(z: &ZfsCli<R>, spec: &PoolCreate) -> Result<()> {
    name::pool(&spec.name)?;
    if spec.vdevs.is_empty() {
        return Err(ZfsError::InvalidOptions("a pool needs at least one vdev"));
    }
    if spec
        .vdevs
        .iter()
        .any(|v| v.is_empty() || v.starts_with('-'))
    {
        return Err(ZfsError::InvalidOptions(
            "a vdev is empty or starts with '-'",
        ));
    }
    let mut cmd = z.zpool().arg("create");
    if spec.force {
        cmd = cmd.arg("-f");
    }
    if spec.no_features {
        cmd = cmd.arg("-d");
    }
    if spec.boot_partition {
        cmd = cmd.arg("-B");
    }
    if let Some(t) = &spec.temp_name {
        name::pool(t)?;
        cmd = cmd.args(["-t", t]);
    }
    if let Some(root) = &spec.altroot {
        cmd = cmd.args(["-R", root]);
    }
    if let Some(m) = &spec.mountpoint {
        cmd = cmd.args(["-m", m]);
    }

    cmd = cmd
        .args(prop_args(
            "-o",
            spec.pool_props
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?)
        .args(prop_args(
            "-O",
            spec.fs_props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?)
        .arg(&spec.name)
        .args(&spec.vdevs);
    z.run(&cmd)?;
    Ok(())
}

pub(super) fn destroy<R: Runner>(z: &ZfsCli<R>, pool: &str, force: bool) -> Result<()> {
    name::pool(pool)?;
    let mut cmd = z.zpool().arg("destroy");
    if force {
        cmd = cmd.arg("-f");
    }
    z.run(&cmd.arg(pool))
        .map_err(|e| z.missing_pool_or(pool, e))?;
    Ok(())
}

pub(super) fn export<R: Runner>(z: &ZfsCli<R>, pool: &str, force: bool) -> Result<()> {
    name::pool(pool)?;
    let mut cmd = z.zpool().arg("export");
    if force {
        cmd = cmd.arg("-f");
    }
    let cmd = cmd.arg(pool);
    let retry = z.export_retry;
    let attempts = retry.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match z.run(&cmd) {
            Ok(_) => return Ok(()),
            Err(e @ RunError::Failed { .. }) => e,
            Err(e) => return Err(e.into()),
        };
        // Whether to retry is decided by asking if the pool is still imported, not by
        // reading the message: a pool that is gone cannot become exportable.
        if !list(z)?.iter().any(|p| p == pool) {
            return Err(ZfsError::NotFound {
                name: pool.to_string(),
            });
        }
        if attempt >= attempts {
            return Err(ZfsError::ExportBusy {
                pool: pool.to_string(),
                attempts,
                last: err,
            });
        }
        tracing::debug!(pool, attempt, "zpool export failed, retrying: {err}");
        thread::sleep(retry.delay);
    }
}

pub(super) fn import<R: Runner>(z: &ZfsCli<R>, spec: &PoolImport) -> Result<()> {
    if !spec.pool.bytes().all(|b| b.is_ascii_digit()) {
        name::pool(&spec.pool)?;
    }
    if spec.temporary && spec.new_name.is_none() {
        return Err(ZfsError::InvalidOptions(
            "a temporary import needs a new name",
        ));
    }
    let mut cmd = z.zpool().arg("import");
    if spec.force {
        cmd = cmd.arg("-f");
    }
    if spec.no_mount {
        cmd = cmd.arg("-N");
    }
    if spec.temporary {
        cmd = cmd.arg("-t");
    }
    for d in &spec.dirs {
        cmd = cmd.args(["-d", d]);
    }
    if let Some(root) = &spec.altroot {
        cmd = cmd.args(["-R", root]);
    }
    if spec.readonly {
        cmd = cmd.args(["-o", "readonly=on"]);
    }
    cmd = cmd
        .args(prop_args(
            "-o",
            spec.props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?)
        .arg(&spec.pool);
    if let Some(n) = &spec.new_name {
        name::pool(n)?;
        cmd = cmd.arg(n);
    }
    z.run(&cmd)?;
    Ok(())
}

pub(super) fn list<R: Runner>(z: &ZfsCli<R>) -> Result<Vec<String>> {
    let mut pools = z.lines(&z.zpool().args(["list", "-H", "-o", "name"]))?;
    pools.sort();
    Ok(pools)
}

pub(super) fn get<R: Runner>(z: &ZfsCli<R>, pool: &str, prop: &str) -> Result<String> {
    name::pool(pool)?;
    name::property(prop)?;
    let cmd = z
        .zpool()
        .args(["get", "-H", "-p", "-o", "value", prop, pool]);
    let out = z.run(&cmd).map_err(|e| z.missing_pool_or(pool, e))?;
    let text = out.stdout_str();
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

pub(super) fn set<R: Runner>(z: &ZfsCli<R>, pool: &str, prop: &str, value: &str) -> Result<()> {
    name::pool(pool)?;
    let cmd = z
        .zpool()
        .arg("set")
        .arg(super::assignment(prop, value)?)
        .arg(pool);
    z.run(&cmd).map_err(|e| z.missing_pool_or(pool, e))?;
    Ok(())
}

pub(super) fn health<R: Runner>(z: &ZfsCli<R>, pool: &str) -> Result<Health> {
    name::pool(pool)?;
    let cmd = z.zpool().args(["list", "-H", "-o", "health", pool]);
    let lines = z.lines(&cmd).map_err(|e| z.missing_pool_or(pool, e))?;
    match lines.as_slice() {
        [one] => Ok(Health::parse(one.trim())),
        _ => Err(ZfsError::Parse {
            cmd: cmd.display(),
            detail: format!("expected one line, got {}", lines.len()),
        }),
    }
}
