//! Scheduling and archive-order tests of the build matrix.

use super::*;
use crate::template::{plan, Features, PlanOptions};

fn jobs(dir: &Path, names: &[&str]) -> Vec<Job> {
    names
        .iter()
        .map(|n| Job {
            entry: Entry {
                group: "g".into(),
                name: n.to_string(),
                features: Vec::new(),
                output_name: None,
                test: false,
            },
            plan: plan(dir, "g", n, &Features::default(), &PlanOptions::default()),
        })
        .collect()
}

#[test]
fn chains_group_by_work_dataset_in_snapshot_order_and_drop_duplicates() {
    let t = tempfile::tempdir().unwrap();
    let g = t.path().join("g");
    std::fs::create_dir_all(&g).unwrap();
    let stage = |name: &str, ds: &str, input: Option<&str>, output: Option<&str>| {
        let mut d = format!(r#""name":"{ds}""#);
        if let Some(i) = input {
            d.push_str(&format!(r#","input_snapshot":"{i}""#));
        }
        if let Some(o) = output {
            d.push_str(&format!(r#","output_snapshot":"{o}""#));
        }
        std::fs::write(
            g.join(format!("{name}.json")),
            format!(r#"{{"dataset":{{{d}}},"steps":[]}}"#),
        )
        .unwrap();
    };
    stage("base", "w", None, Some("base"));
    stage("a", "w", Some("base"), Some("a"));
    stage("b", "w", Some("base"), None);
    stage("a2", "w", Some("a"), None);
    stage("other", "v", None, None);
    let listed = jobs(t.path(), &["a2", "a", "other", "b", "base", "a"]);
    for j in &listed {
        assert!(j.plan.is_valid(), "{:?}", j.plan.problems);
    }
    let chains = schedule(listed).unwrap();
    let names: Vec<Vec<&str>> = chains
        .iter()
        .map(|c| c.iter().map(|j| j.plan.name.as_str()).collect())
        .collect();
    assert_eq!(names, vec![vec!["base", "a", "a2", "b"], vec!["other"]]);
    stage("x", "c", Some("y"), Some("x"));
    stage("y", "c", Some("x"), Some("y"));
    assert!(matches!(
        schedule(jobs(t.path(), &["x", "y"])),
        Err(MatrixError::Cycle(_))
    ));
}

#[test]
fn readers_of_an_archive_wait_for_its_packer_and_cycles_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let g = t.path().join("g");
    std::fs::create_dir_all(&g).unwrap();
    let write =
        |name: &str, text: &str| std::fs::write(g.join(format!("{name}.json")), text).unwrap();
    write(
        "base",
        r#"{"dataset":{"name":"w","output_snapshot":"one"},"steps":[]}"#,
    );
    write(
        "a",
        r#"{"dataset":{"name":"w","input_snapshot":"one"},"steps":[{"t":"pack_tar","name":"a.tar"}]}"#,
    );
    write(
        "img",
        r#"{"dataset":{"name":"i"},"steps":[{"t":"unpack_tar","name":"a.tar"},
            {"t":"ensure_file","file":"/x","outputsrc":"notes.txt","owner":"root","group":"root","mode":"644"},
            {"t":"pack_tar","name":"img.tar","with":"never"}]}"#,
    );
    let listed = jobs(t.path(), &["img", "a", "base"]);
    for j in &listed {
        assert!(j.plan.is_valid(), "{:?}", j.plan.problems);
    }
    let chains = schedule(listed).unwrap();
    let img = &chains[0][0];
    assert_eq!(img.reads(), ["a.tar", "notes.txt"]);
    assert!(img.writes().is_empty(), "a skipped step writes nothing");
    let (base, a) = (&chains[1][0], &chains[1][1]);
    assert_eq!(a.writes(), ["a.tar"]);

    let mut arch = Archives::new(chains.iter().flatten());
    assert_eq!(arch.inputs(img), Inputs::Wait);
    assert_eq!(arch.inputs(base), Inputs::Ready);
    arch.finished(a, true);
    assert_eq!(arch.inputs(img), Inputs::Ready, "notes.txt is no build's");
    let mut arch = Archives::new(chains.iter().flatten());
    arch.finished(a, false);
    assert_eq!(arch.inputs(img), Inputs::Missing("a.tar".into()));

    // A stage reading what a later stage of its own chain packs can never start.
    write(
        "early",
        r#"{"dataset":{"name":"v","output_snapshot":"e"},"steps":[{"t":"unpack_tar","name":"late.tar"}]}"#,
    );
    write(
        "late",
        r#"{"dataset":{"name":"v","input_snapshot":"e"},"steps":[{"t":"pack_tar","name":"late.tar"}]}"#,
    );
    let e = schedule(jobs(t.path(), &["late", "early"])).unwrap_err();
    assert!(
        matches!(&e, MatrixError::FileCycle(s) if s == "g/early, g/late"),
        "{e}"
    );
}

#[test]
fn readers_of_an_image_file_wait_for_the_build_that_writes_it() {
    let t = tempfile::tempdir().unwrap();
    let g = t.path().join("g");
    std::fs::create_dir_all(&g).unwrap();
    // As the corpus's install media do: a ufs ramdisk, then a stage that gzips it in.
    std::fs::write(
        g.join("ramdisk.json"),
        r#"{"ufs":{"size":64,"inode_density":4096},"steps":[]}"#,
    )
    .unwrap();
    std::fs::write(
        g.join("media.json"),
        r#"{"dataset":{"name":"m"},"steps":[{"t":"gzip","src":"g-ramdisk.ufs",
            "target":"/platform/i86pc/amd64/boot_archive","owner":"root","group":"root","mode":"444"}]}"#,
    )
    .unwrap();
    std::fs::write(
        g.join("disk.json"),
        r#"{"pool":{"name":"rpool","size":128,"partition_only":true},"steps":[]}"#,
    )
    .unwrap();
    let mut listed = jobs(t.path(), &["media", "ramdisk", "disk"]);
    for j in &listed {
        assert!(j.plan.is_valid(), "{:?}", j.plan.problems);
    }
    assert_eq!(listed[1].writes(), ["g-ramdisk.ufs"]);
    assert_eq!(listed[2].writes(), ["g-disk.raw", "g-disk.partonly"]);
    listed[2].entry.output_name = Some("big".into());
    assert_eq!(listed[2].writes(), ["g-big.raw", "g-big.partonly"]);

    let chains = schedule(listed).unwrap();
    let (media, ramdisk) = (&chains[0][0], &chains[1][0]);
    let mut arch = Archives::new(chains.iter().flatten());
    assert_eq!(arch.inputs(media), Inputs::Wait);
    arch.finished(ramdisk, true);
    assert_eq!(arch.inputs(media), Inputs::Ready);
    let mut arch = Archives::new(chains.iter().flatten());
    arch.finished(ramdisk, false);
    assert_eq!(arch.inputs(media), Inputs::Missing("g-ramdisk.ufs".into()));
}

#[test]
fn log_names_never_clash() {
    let e = |n: &str, o: Option<&str>, f: &[&str]| Entry {
        group: "g".into(),
        name: n.into(),
        features: f.iter().map(|s| s.to_string()).collect(),
        output_name: o.map(Into::into),
        test: false,
    };
    let names = [
        log_name(&e("a", None, &[])),
        log_name(&e("a", Some("b"), &[])),
        log_name(&e("a", None, &["x"])),
        log_name(&e("a", None, &["y"])),
    ];
    let set: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(set.len(), names.len(), "{names:?}");
}
