//! Every real template in the shared corpus validates and plans, with exactly the three
//! defects the corpus README documents reported, each precisely.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use image_builder::template::load::main_templates;
use image_builder::template::{plan, Features, PlanOptions, Problem};

/// The feature set the corpus README gives for validating the whole corpus.
const FEATURES: &[&str] = &[
    "name=helios",
    "heliosver=2.0",
    "publisher=helios-dev",
    "console=ttya",
    "baud=115200",
    "ufs=generic-ttya-ufs",
    "iso_type=generic",
    "no-metadata-agent",
];

/// The corpus: `$IMAGE_BUILDER_CORPUS`, or the shared material beside the checkout. When
/// it is missing a test says `skipped: ...` and passes, except under CI (`CI` set), where
/// the material is always laid beside the clone and its absence is a failure.
pub(crate) fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("IMAGE_BUILDER_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    if p.is_dir() {
        return Some(p);
    }
    let why = format!(
        "the template corpus is not at {} (the shared material beside the checkout, or set IMAGE_BUILDER_CORPUS)",
        p.display()
    );
    assert!(std::env::var_os("CI").is_none_or(|v| v.is_empty()), "{why}");
    eprintln!("skipped: {why}");
    None
}

/// Paths listed in UPSTREAM-FILES.txt exist upstream (scripts were left out on purpose).
fn upstream(tree: &Path) -> HashSet<PathBuf> {
    std::fs::read_to_string(tree.join("UPSTREAM-FILES.txt"))
        .expect("UPSTREAM-FILES.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| tree.join(l.trim()))
        .collect()
}

/// (tree, group, name) -> every error, as (file relative to the tree, path, message).
/// One error: tree, template, file, JSON path, message and the include site.
type Row = (String, String, String, String, String, String);

fn corpus_errors() -> Option<Vec<Row>> {
    let corpus = corpus()?;
    let features = Features::from_directives(FEATURES).unwrap();
    let mut out = Vec::new();
    let mut count = 0;
    for tree in ["helios-engvm", "toasterson-installer"] {
        let root = corpus.join(tree);
        let present = upstream(&root);
        let opts = PlanOptions {
            external: &[],
            assume_present: &|p| present.contains(p),
        };
        for (group, name) in main_templates(&root).unwrap() {
            count += 1;
            let p = plan(&root, &group, &name, &features, &opts);
            assert!(!p.steps.is_empty(), "{tree} {group}/{name} has no steps");
            assert!(p.target.is_some(), "{tree} {group}/{name} has no target");
            serde_json::to_string(&p).expect("the plan serializes");
            for e in p.errors() {
                out.push(row(tree, &group, &name, &root, e));
            }
        }
    }
    assert_eq!(count, 44, "the corpus has 44 main templates");
    Some(out)
}

fn row(
    tree: &str,
    g: &str,
    n: &str,
    root: &Path,
    e: &Problem,
) -> (String, String, String, String, String, String) {
    let file = e
        .file
        .strip_prefix(root)
        .unwrap_or(&e.file)
        .display()
        .to_string();
    (
        tree.into(),
        format!("{g}/{n}"),
        file,
        e.path.clone(),
        e.message.clone(),
        e.included_from.join(" | "),
    )
}

#[test]
fn corpus_reports_exactly_the_three_known_defects() {
    let Some(errors) = corpus_errors() else {
        return;
    };
    let brief: Vec<(String, String, String, String)> = errors
        .iter()
        .map(|(t, tpl, f, p, _, _)| (t.clone(), tpl.clone(), f.clone(), p.clone()))
        .collect();
    let want: Vec<(String, String, String, String)> = [
        (
            "toasterson-installer",
            "cloudimage/ttya-openindiana-hipster-dev",
            "include/sysconfig-dev.json",
            "steps[7].src",
        ),
        (
            "toasterson-installer",
            "cloudimage/ttya-openindiana-hipster-dev",
            "include/sysconfig-dev.json",
            "steps[8].src",
        ),
        (
            "toasterson-installer",
            "cloudimage/ttya-openindiana-hipster-dev",
            "include/sysconfig-dev.json",
            "steps[9].src",
        ),
        (
            "toasterson-installer",
            "cloudimage/ttya-openindiana-hipster-dev",
            "include/sysconfig-dev.json",
            "steps[10].src",
        ),
        (
            "toasterson-installer",
            "installer/generic-ttya-ufs",
            "include/machined-dev.json",
            "steps[0].src",
        ),
        (
            "toasterson-installer",
            "installer/generic-ttya-zfs",
            "installer/generic-ttya-zfs.json",
            "steps[8].src",
        ),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
    .collect();
    assert_eq!(brief, want, "full errors: {errors:#?}");
}

#[test]
fn corpus_defects_name_the_value_the_lookup_and_the_include_site() {
    let Some(errors) = corpus_errors() else {
        return;
    };
    let msg = |tpl: &str, path: &str| {
        errors
            .iter()
            .find(|e| e.1 == tpl && e.3 == path)
            .map(|e| (e.4.clone(), e.5.clone()))
            .unwrap()
    };
    let (m, from) = msg("cloudimage/ttya-openindiana-hipster-dev", "steps[7].src");
    assert!(
        m.starts_with(
            "source file \"files/sysconfig-dev/sysconfig-wrapper\" not found; looked for "
        ),
        "{m}"
    );
    assert!(
        m.contains("cloudimage/files/files/sysconfig-dev/sysconfig-wrapper and "),
        "{m}"
    );
    assert!(
        from.ends_with("cloudimage/ttya-openindiana-hipster-dev.json steps[11]"),
        "{from}"
    );
    let (m, from) = msg("installer/generic-ttya-ufs", "steps[0].src");
    assert!(m.starts_with("source file \"machined\" not found"), "{m}");
    assert!(
        from.ends_with("installer/generic-ttya-ufs.json steps[8]"),
        "{from}"
    );
    let (m, from) = msg("installer/generic-ttya-zfs", "steps[8].src");
    assert!(
        m.starts_with("source file \"install-helios.sh\" not found"),
        "{m}"
    );
    assert_eq!(from, "");
}

#[test]
fn corpus_plan_expands_macros_and_marks_skipped_steps() {
    let Some(corpus) = corpus() else { return };
    let root = corpus.join("helios-engvm");
    let f = Features::from_directives(FEATURES.iter().chain(&["onu=https://onu.example/repo"]))
        .unwrap();
    let p = plan(
        &root,
        "helios",
        "base-01-strap",
        &f,
        &PlanOptions::default(),
    );
    assert!(p.is_valid(), "{:?}", p.problems);
    let target = serde_json::to_value(&p.target).unwrap();
    assert_eq!(target["kind"], "dataset");
    assert_eq!(target["name"], "base-onu");
    let publisher = p
        .steps
        .iter()
        .filter(|s| s.t == "pkg_set_publisher")
        .collect::<Vec<_>>();
    assert_eq!(publisher.len(), 2);
    assert_eq!(
        publisher[0].skip.as_deref(),
        Some("\"with\": \"serdev\" and feature \"serdev\" is not set")
    );
    assert_eq!(publisher[1].skip, None);
    assert_eq!(publisher[1].args["publisher"], "helios-dev");
    assert_eq!(
        publisher[1].args["uri"],
        "https://pkg.oxide.computer/helios/2.0/dev/"
    );
}

/// The shape of a current Helios ramdisk stage (oxidecomputer/helios
/// `image/templates/*/ramdisk-01-os.json`, written here, not copied): publishers as
/// `"uris": [ "${@@publisher_N_url}" ]` guarded by `"with": "publisher_N_name"`, and a
/// package list ending in `"${@extra_packages}"`. helios-build passes
/// `-F publisher_0_name=NAME` and one `-F publisher_0_url+=URL` per origin, and
/// `extra_packages` only when asked, so a default build leaves it unset.
#[test]
fn helios_ramdisk_shape_plans_with_default_features() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("gimlet")).unwrap();
    std::fs::write(
        dir.path().join("gimlet/ramdisk-01-os.json"),
        r#"{
    "dataset": { "name": "ramdisk", "output_snapshot": "os" },
    "steps": [
        { "t": "pkg_image_create" },
        { "t": "pkg_set_publisher", "with": "publisher_0_name",
            "publisher": "${publisher_0_name}", "uris": [ "${@@publisher_0_url}" ] },
        { "t": "pkg_set_publisher", "with": "publisher_1_name",
            "publisher": "${publisher_1_name}", "uris": [ "${@@publisher_1_url}" ] },
        { "t": "pkg_install", "pkgs": [ "/system/network", "/driver/storage/nvme",
            "${@extra_packages}" ] },
        { "t": "pkg_install", "with": "optever", "pkgs": [ "/driver/network/opte@${optever}" ] }
    ]
}"#,
    )
    .unwrap();
    let f = Features::from_directives([
        "publisher_0_name=helios-dev",
        "publisher_0_url+=https://pkg.example/helios/3/dev/",
        "publisher_0_url+=file:///local/repo",
        "baud=3000000",
    ])
    .unwrap();
    let p = plan(
        dir.path(),
        "gimlet",
        "ramdisk-01-os",
        &f,
        &PlanOptions::default(),
    );
    assert!(p.is_valid(), "{:#?}", p.problems);
    assert_eq!(
        p.steps[1].args["uris"],
        serde_json::json!(["https://pkg.example/helios/3/dev/", "file:///local/repo"])
    );
    assert!(p.steps[2].skip.is_some());
    assert_eq!(
        p.steps[3].args["pkgs"],
        serde_json::json!(["/system/network", "/driver/storage/nvme"])
    );
    let f = Features::from_directives([
        "publisher_0_name=helios-dev",
        "publisher_0_url+=https://pkg.example/helios/3/dev/",
        "extra_packages+=/ooce/util/jq",
        "extra_packages+=/editor/vim",
    ])
    .unwrap();
    let p = plan(
        dir.path(),
        "gimlet",
        "ramdisk-01-os",
        &f,
        &PlanOptions::default(),
    );
    assert!(p.is_valid(), "{:#?}", p.problems);
    assert_eq!(
        p.steps[3].args["pkgs"],
        serde_json::json!([
            "/system/network",
            "/driver/storage/nvme",
            "/ooce/util/jq",
            "/editor/vim"
        ])
    );
    // A publisher named without any origin is reported at its step, before the build.
    let f = Features::from_directives(["publisher_0_name=helios-dev"]).unwrap();
    let p = plan(
        dir.path(),
        "gimlet",
        "ramdisk-01-os",
        &f,
        &PlanOptions::default(),
    );
    let errs: Vec<String> = p
        .errors()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    assert_eq!(
        errs,
        ["steps[1].uris[0]: feature \"publisher_0_url\" is not defined (use `${@publisher_0_url}` if it may be unset) in \"${@@publisher_0_url}\""]
    );
}
