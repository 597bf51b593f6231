//! With `--store`, what a build starts from but this machine lacks comes from the store
//! (docs/scaling.md): a dataset stage's input snapshot, made by the stage of the same
//! group whose output snapshot it is, and the archives a build unpacks or copies from the
//! output directory, made by the stage that packs them. Each such stage is taken as a
//! cache hit (its own inputs first): from this machine's cache, or from the store. None
//! is built here: a stage the store lacks is an error naming it, because building it is
//! the job (in a CI pipeline, the job) of its own build.
//!
//! This is what lets one CI job run on a runner that never saw the jobs before it: the
//! job's `image-builder build --store` receives the chain of stages it starts from.

use std::path::PathBuf;

use super::error::BuildError;
use super::layout::{self, Layout};
use super::{BuildOptions, Env, Event};
use crate::template::{self, Features, Plan, PlanOptions, Target};

/// Takes what `plan` starts from and this machine lacks from the store; `chain` holds the
/// templates whose inputs are being taken, outermost first, to refuse a circle.
pub(super) fn fetch(
    plan: &Plan,
    opts: &BuildOptions,
    env: &Env,
    events: &mut dyn FnMut(&Event),
    chain: &mut Vec<String>,
) -> Result<(), BuildError> {
    if opts.store.is_none() {
        return Ok(());
    }
    let me = format!("{}/{}", plan.group, plan.name);
    if chain.contains(&me) {
        let mut names = chain.clone();
        names.push(me);
        return Err(BuildError::InputCycle { chain: names });
    }
    chain.push(me.clone());
    let result = fetch_for(plan, &me, opts, env, events, chain);
    chain.pop();
    result
}

fn fetch_for(
    plan: &Plan,
    me: &str,
    opts: &BuildOptions,
    env: &Env,
    events: &mut dyn FnMut(&Event),
    chain: &mut Vec<String>,
) -> Result<(), BuildError> {
    // The input snapshot, from the stage of this group that makes it.
    if let Some(Target::Dataset(t)) = &plan.target {
        if let Some(input) = &t.input_snapshot {
            let stage = layout::Stage::new(plan, t, opts);
            let snapshot = stage.snap(input);
            if !env.zfs.exists(&snapshot)? {
                take(
                    me,
                    &snapshot,
                    snapshot_makers(plan, opts),
                    opts,
                    env,
                    events,
                    chain,
                )?;
            }
        }
    }
    // The archives it reads from the output directory, from the stage that packs them.
    let own = plan.packs();
    let reads: Vec<String> = plan
        .reads()
        .into_iter()
        .filter(|r| !own.contains(r))
        .collect();
    if reads.is_empty() {
        return Ok(());
    }
    // One listing says whether the output dataset exists and where it is mounted; when it
    // cannot be listed, every file counts as missing (taking a stage that is here already
    // is a cache hit, and the build's own checks then say what is wrong).
    let out = Layout::new(&opts.dataset, &plan.group, &plan.name, None).output;
    let listed = env.zfs.filesystems(&[out.as_str()], 0).unwrap_or_default();
    let output_dir = match listed.iter().find(|f| f.name == out) {
        Some(fs) => layout::mount_dir(env.zfs, fs)?,
        None => PathBuf::from("/nonexistent"),
    };
    let mut all: Option<Vec<Plan>> = None;
    for file in reads {
        if output_dir.join(&file).exists() {
            continue;
        }
        let all = all.get_or_insert_with(|| {
            templates(opts)
                .into_iter()
                .filter(|(g, n)| *g != plan.group || *n != plan.name)
                .map(|(g, n)| planned(plan, opts, &g, &n))
                .collect()
        });
        let makers: Vec<Plan> = all
            .iter()
            .filter(|p| matches!(p.target, Some(Target::Dataset(_))) && p.packs().contains(&file))
            .cloned()
            .collect();
        if makers.is_empty() {
            // Nothing here makes it: the build's own check names the missing file.
            continue;
        }
        take(me, &file, makers, opts, env, events, chain)?;
    }
    Ok(())
}

/// `GROUP/NAME` planned as `plan` was: its features, and the build's `-E` directories.
fn planned(plan: &Plan, opts: &BuildOptions, group: &str, name: &str) -> Plan {
    let features = Features::from_directives(&plan.features).unwrap_or_default();
    template::plan(
        &opts.template_root,
        group,
        name,
        &features,
        &PlanOptions {
            external: &opts.external,
            ..PlanOptions::default()
        },
    )
}

/// The templates of `plan`'s group that make its input snapshot: dataset stages on the
/// same work dataset whose output snapshot it is.
pub(super) fn snapshot_makers(plan: &Plan, opts: &BuildOptions) -> Vec<Plan> {
    let Some(Target::Dataset(t)) = &plan.target else {
        return Vec::new();
    };
    let Some(input) = &t.input_snapshot else {
        return Vec::new();
    };
    templates(opts)
        .into_iter()
        .filter(|(g, n)| *g == plan.group && *n != plan.name)
        .map(|(g, n)| planned(plan, opts, &g, &n))
        .filter(|p| match &p.target {
            Some(Target::Dataset(d)) => {
                d.name == t.name && d.output_snapshot.as_deref() == Some(input)
            }
            _ => false,
        })
        .collect()
}

/// Takes `what` from its one maker, as a cache hit only.
fn take(
    me: &str,
    what: &str,
    makers: Vec<Plan>,
    opts: &BuildOptions,
    env: &Env,
    events: &mut dyn FnMut(&Event),
    chain: &mut Vec<String>,
) -> Result<(), BuildError> {
    let maker = match <[Plan; 1]>::try_from(makers) {
        Ok([maker]) => maker,
        Err(makers) if makers.is_empty() => {
            // No template here makes it: the build says what is missing, as without --store.
            return Ok(());
        }
        Err(makers) => {
            return Err(BuildError::Producers {
                needed_by: me.to_string(),
                what: what.to_string(),
                candidates: makers
                    .iter()
                    .map(|p| format!("{}/{}", p.group, p.name))
                    .collect(),
            })
        }
    };
    let template = format!("{}/{}", maker.group, maker.name);
    tracing::info!("{me} needs {what}: taking {template} from the cache or the store");
    let fetch_opts = BuildOptions {
        output_name: None,
        reset: false,
        fullreset: false,
        keep_failed: false,
        resume: false,
        until: None,
        from: None,
        fetch_only: true,
        ..opts.clone()
    };
    match super::build_in(&maker, &fetch_opts, env, events, chain) {
        // A fetch-only build runs no step: it is a cache hit or an error.
        Ok(_) => Ok(()),
        Err(e @ BuildError::InputCycle { .. }) => Err(e),
        Err(source) => Err(BuildError::Input {
            needed_by: me.to_string(),
            what: what.to_string(),
            template,
            source: Box::new(source),
        }),
    }
}

/// Every template under the template root, as (group, name); none when it cannot be read
/// (the build's own checks then say what is missing).
fn templates(opts: &BuildOptions) -> Vec<(String, String)> {
    template::load::main_templates(&opts.template_root).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::stage_store::StoreOptions;
    use crate::host::Host;
    use crate::store::StoreUrl;
    use runner::{Output, Recorder};

    /// Builds `g/NAME` of `templates` with a `file://` store on a machine without the
    /// snapshots `missing`: `zfs list` of each fails as zfs(8) does for a missing dataset
    /// (zfs_main.c's `zfs list` reports zfs_open's error: "cannot open 'NAME': dataset
    /// does not exist", status 1).
    fn build_on_nothing(
        templates: &[(&str, &str)],
        name: &str,
        missing: &[&str],
    ) -> (BuildError, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in templates {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let rec = Recorder::new();
        for snap in missing {
            let name = format!("rpool/ib/work/g/c@{snap}");
            rec.always(
                &format!("/sbin/zfs list -H -p -o name -t all {name}"),
                Output::failed(1, format!("cannot open '{name}': dataset does not exist\n")),
            );
        }
        let zfs = zfs::ZfsCli::new(&rec, zfs::ZfsTools::new("/sbin/zfs", "/sbin/zpool"));
        let env = Env {
            host: Host::Illumos,
            runner: &rec,
            zfs: &zfs,
        };
        let url = format!("file://{}/store", dir.path().display());
        let opts = BuildOptions {
            assume_tools: true,
            store: Some(StoreOptions {
                url: StoreUrl::parse(&url).unwrap(),
                required: false,
            }),
            ..BuildOptions::new("rpool/ib", dir.path())
        };
        let p = template::plan(
            dir.path(),
            "g",
            name,
            &Features::default(),
            &PlanOptions::default(),
        );
        assert!(p.is_valid(), "{:?}", p.problems);
        let err = super::super::build(&p, &opts, &env, &mut |_| {}).unwrap_err();
        // Nothing was created, destroyed or received: the refusal comes first.
        let changed: Vec<String> = rec
            .lines()
            .into_iter()
            .filter(|l| !l.starts_with("/sbin/zfs list"))
            .collect();
        (err, changed)
    }

    const FIRST: &str = r#"{ "dataset": { "name": "c", "output_snapshot": "one" }, "steps": [] }"#;
    const SECOND: &str = r#"{ "dataset": { "name": "c", "input_snapshot": "one",
        "output_snapshot": "two" }, "steps": [] }"#;

    #[test]
    fn two_stages_making_the_input_are_named_and_none_is_taken() {
        let (err, changed) = build_on_nothing(
            &[
                ("g/a.json", FIRST),
                ("g/b.json", FIRST),
                ("g/x.json", SECOND),
            ],
            "x",
            &["one"],
        );
        assert!(
            matches!(&err, BuildError::Producers { candidates, .. } if candidates == &["g/a", "g/b"]),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "g/x needs rpool/ib/work/g/c@one, which 2 templates make (g/a, g/b): build the \
             one meant first"
        );
        assert_eq!(changed, Vec::<String>::new());
    }

    #[test]
    fn stages_that_make_each_other_s_input_are_refused() {
        let p = r#"{ "dataset": { "name": "c", "input_snapshot": "two", "output_snapshot": "one" }, "steps": [] }"#;
        let (err, changed) = build_on_nothing(
            &[("g/p.json", p), ("g/q.json", SECOND)],
            "p",
            &["one", "two"],
        );
        assert_eq!(
            err.to_string(),
            "the stages that make each other's inputs go round in a circle: g/p -> g/q -> g/p"
        );
        assert_eq!(changed, Vec::<String>::new());
    }

    #[test]
    fn templates_are_listed_by_group_and_a_plan_names_the_archives_it_reads() {
        let reader = r#"{ "dataset": { "name": "r", "output_snapshot": "done" }, "steps": [
            { "t": "unpack_tar", "name": "nobody.tar" } ] }"#;
        let packer = r#"{ "dataset": { "name": "c", "input_snapshot": "one" }, "steps": [
            { "t": "pack_tar", "name": "other.tar" } ] }"#;
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in [("g/r.json", reader), ("h/p.json", packer)] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let plan = template::plan(
            dir.path(),
            "g",
            "r",
            &Features::default(),
            &PlanOptions::default(),
        );
        // Every template of every group, in order.
        let opts = BuildOptions::new("rpool/ib", dir.path());
        assert_eq!(
            templates(&opts),
            [("g".to_string(), "r".to_string()), ("h".into(), "p".into())]
        );
        assert_eq!(plan.reads(), ["nobody.tar"]);
    }
}
