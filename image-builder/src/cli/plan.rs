//! `image-builder plan`: the resolved, expanded step list.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::build::stage_store::StoreStatus;
use image_builder::build::{self, BuildOptions, CacheStatus};
use image_builder::context::Context as Ctx;
use image_builder::embedded;
use image_builder::template::Plan;

use super::args::{report, FirstBootArgs, TemplateArgs};
use super::in_guest::{self, GuestArgs, GuestExit};

/// Show what a build would do: every step in run order with its source file and index,
/// its type, its expanded arguments, and whether `with`/`without` skips it.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    template: TemplateArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// Root dataset of the builds: also say whether the stage would come from the cache
    /// and, if not, why.
    #[arg(short = 'd', long = "dataset", value_name = "DATASET")]
    dataset: Option<String>,
    /// Output name (`-N`) the build would use.
    #[arg(short = 'N', long = "output-name", value_name = "NAME")]
    output_name: Option<String>,
    /// With -d: the first-boot flags the build would use (they are part of the cache key).
    #[command(flatten)]
    first_boot: FirstBootArgs,
    /// With -d: when the stage misses locally, also say whether this store has it.
    #[command(flatten)]
    store: super::store::StoreArgs,
    /// With -d on a host without /dev/zfs: ask the embedded ZFS guest.
    #[command(flatten)]
    guest: GuestArgs,
}

pub fn run(a: PlanArgs, ctx: &Ctx) -> Result<ExitCode> {
    let plan = a.template.plan()?;
    let errors = report(&plan);
    // The cache is in the embedded guest's pool: ask there (the guest's plan prints all).
    let inside = std::env::var_os("ZFS_VM_GUEST").is_some();
    if let (Some(ds), 0) = (&a.dataset, errors) {
        if a.guest.wanted(ctx.host(), inside) {
            return Ok(match a.guest.run_plan(ds, ctx.runner())? {
                GuestExit::Finished(c) => in_guest::exit_code(c),
                GuestExit::Failed(code) => code,
            });
        }
    }
    let cache = match (&a.dataset, errors) {
        (Some(ds), 0) => Some(cache_status(&a, &plan, ds, ctx)?),
        _ => None,
    };
    let steps = match (&a.dataset, &cache) {
        (Some(ds), Some(CacheStatus::Miss(_))) => step_status(&a, &plan, ds, ctx)?,
        _ => None,
    };
    let store = match (&a.dataset, &cache) {
        (Some(ds), Some(CacheStatus::Miss(_))) => store_status(&a, &plan, ds, ctx)?,
        _ => None,
    };
    if a.json {
        let mut v = serde_json::to_value(&plan)?;
        if let Some(s) = &store {
            v["store"] = serde_json::to_value(s)?;
        }
        if let Some(c) = &cache {
            v["cache"] = serde_json::to_value(c)?;
        }
        if let Some(st) = &steps {
            v["steps_cache"] = serde_json::to_value(st)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_plan(&plan);
        match &cache {
            Some(CacheStatus::Hit(s)) => println!("cache: hit ({s} is current)"),
            Some(CacheStatus::Miss(why)) => println!("cache: miss ({why})"),
            None => {}
        }
        match &store {
            Some(StoreStatus::Hit(tag)) => println!("store: hit ({tag}: a build receives it)"),
            Some(StoreStatus::Miss(tag)) => println!("store: miss (no {tag})"),
            Some(StoreStatus::Unknown(why)) => println!("store: cannot tell ({why})"),
            None => {}
        }
        if let Some(st) = &steps {
            match &st.resume_from {
                Some((i, cp)) => println!("steps 0-{i}: from checkpoint {cp}; the rest run"),
                None => println!("steps: no matching checkpoint; every step runs"),
            }
            if let Some((i, why)) = &st.first_change {
                println!("first changed step: {i}: {why}");
            }
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        super::exit::usage()
    })
}

/// With --store: whether the store has the stage that misses locally.
fn store_status(
    a: &PlanArgs,
    plan: &Plan,
    dataset: &str,
    ctx: &Ctx,
) -> Result<Option<StoreStatus>> {
    let opts = a.store.apply(BuildOptions {
        output_name: a.output_name.clone(),
        external: a.template.source.external()?,
        ..a.first_boot
            .apply(BuildOptions::new(dataset, a.template.source.root()?))
    })?;
    let Some(store) = &opts.store else {
        return Ok(None);
    };
    Ok(build::stage_store::status(plan, store, &opts, &ctx.zfs())?)
}

fn step_status(
    a: &PlanArgs,
    plan: &Plan,
    dataset: &str,
    ctx: &Ctx,
) -> Result<Option<build::StepStatus>> {
    let zfs = ctx.zfs();
    let opts = a.first_boot.apply(BuildOptions {
        output_name: a.output_name.clone(),
        external: a.template.source.external()?,
        ..BuildOptions::new(dataset, a.template.source.root()?)
    });
    Ok(build::step_status(plan, &opts, &zfs)?)
}

fn cache_status(a: &PlanArgs, plan: &Plan, dataset: &str, ctx: &Ctx) -> Result<CacheStatus> {
    let zfs = ctx.zfs();
    let opts = a.first_boot.apply(BuildOptions {
        output_name: a.output_name.clone(),
        external: a.template.source.external()?,
        ..BuildOptions::new(dataset, a.template.source.root()?)
    });
    if std::env::var_os("ZFS_VM_GUEST").is_some() {
        let disk = std::env::var("ZFS_VM_DISKS").unwrap_or_default();
        let disk = disk.split_whitespace().next().unwrap_or("/dev/vda");
        embedded::guest_pool(&zfs, dataset, disk, Path::new("/ib-embedded"))?;
        let status = build::cache_status(plan, &opts, &zfs);
        embedded::guest_release(&zfs, dataset)?;
        return Ok(status?);
    }
    Ok(build::cache_status(plan, &opts, &zfs)?)
}

fn print_plan(plan: &Plan) {
    println!("{}/{} ({})", plan.group, plan.name, plan.file.display());
    if let Some(t) = &plan.target {
        let v = serde_json::to_value(t).unwrap_or_default();
        println!("target: {v}");
    }
    if !plan.features.is_empty() {
        println!("features: {}", plan.features.join(" "));
    }
    let root = plan.file.parent().and_then(|p| p.parent());
    for s in &plan.steps {
        let file = root
            .and_then(|r| s.file.strip_prefix(r).ok())
            .unwrap_or(&s.file);
        let args = match &s.args {
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            serde_json::Value::Null => "(did not parse)".to_string(),
            v => v.to_string(),
        };
        let skip = s
            .skip
            .as_deref()
            .map(|w| format!("  [skipped: {w}]"))
            .unwrap_or_default();
        println!(
            "{:>3}  {:<20} {}:steps[{}]  {args}{skip}",
            s.index,
            s.t,
            file.display(),
            s.step_index
        );
    }
}
