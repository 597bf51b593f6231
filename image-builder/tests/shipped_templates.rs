//! Every template shipped in the project's templates/ tree validates: with no features
//! and no `-E` tree the only warnings are the unchecked `extsrc` files, and with a proto
//! tree holding those files there is no problem at all.

use std::path::{Path, PathBuf};

use image_builder::template::load::main_templates;
use image_builder::template::{plan, Features, Plan, PlanOptions};

fn shipped() -> (PathBuf, Vec<(String, String)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let found = main_templates(&root).unwrap();
    (root, found)
}

fn extsrc_paths(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .filter(|s| s.skip.is_none())
        .filter_map(|s| s.args.get("extsrc").and_then(|v| v.as_str()))
        .map(str::to_string)
        .collect()
}

#[test]
fn shipped_templates_validate_without_features() {
    let (root, templates) = shipped();
    for (group, name) in &templates {
        let p = plan(
            &root,
            group,
            name,
            &Features::default(),
            &PlanOptions::default(),
        );
        let unexpected: Vec<String> = p
            .problems
            .iter()
            .filter(|p| p.is_error() || !p.message.contains("no -E directory was given"))
            .map(|p| p.to_string())
            .collect();
        assert!(unexpected.is_empty(), "{group}/{name}: {unexpected:#?}");
        assert_eq!(
            p.problems.len(),
            extsrc_paths(&p).len(),
            "{group}/{name}: one warning per extsrc file"
        );
    }
    assert!(
        templates.len() >= 5,
        "found only {} templates",
        templates.len()
    );
}

#[test]
fn shipped_templates_are_clean_with_a_proto_tree() {
    let (root, templates) = shipped();
    let proto = tempfile::tempdir().unwrap();
    let mut staged = 0;
    for (group, name) in &templates {
        let p = plan(
            &root,
            group,
            name,
            &Features::default(),
            &PlanOptions::default(),
        );
        for rel in extsrc_paths(&p) {
            let dest = proto.path().join(&rel);
            assert!(
                dest.starts_with(proto.path()) && !rel.contains(".."),
                "{group}/{name}: extsrc {rel:?} leaves the proto tree"
            );
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(&dest, b"#!/bin/false\n").unwrap();
            staged += 1;
        }
    }
    assert!(staged > 0, "no template uses extsrc");
    let external = [proto.path().to_path_buf()];
    for (group, name) in &templates {
        let p = plan(
            &root,
            group,
            name,
            &Features::default(),
            &PlanOptions {
                external: &external,
                ..PlanOptions::default()
            },
        );
        let problems: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        assert!(problems.is_empty(), "{group}/{name}: {problems:#?}");
    }
}

#[test]
fn dev_image_is_the_release_image_plus_the_dev_include() {
    let (root, _) = shipped();
    let steps = |name: &str| -> Vec<(String, serde_json::Value)> {
        let p = plan(
            &root,
            "cloudimage",
            name,
            &Features::default(),
            &PlanOptions::default(),
        );
        p.steps
            .iter()
            .map(|s| (s.t.clone(), s.args.clone()))
            .collect()
    };
    let release = steps("ttya-openindiana-hipster");
    let dev = steps("ttya-openindiana-hipster-dev");
    // Everything but finalise (the last step) comes first, in the same order.
    let (last, body) = release.split_last().unwrap();
    assert_eq!(&dev[..body.len()], body);
    assert_eq!(dev.last().unwrap(), last);
    assert_eq!(last.0, "seed_smf");
    let extra = &dev[body.len()..dev.len() - 1];
    let has = |t: &str, field: &str, value: &str, src: Option<&str>| {
        extra.iter().any(|(st, a)| {
            st == t
                && a.get(field).and_then(|v| v.as_str()) == Some(value)
                && src.is_none_or(|s| a.get("src").and_then(|v| v.as_str()) == Some(s))
        })
    };
    assert!(has("ensure_dir", "dir", "/repo", None));
    assert!(has(
        "ensure_file",
        "file",
        "/etc/sysconfig.toml",
        Some("sysconfig/dev/sysconfig.toml")
    ));
    assert!(has(
        "ensure_file",
        "file",
        "/lib/svc/manifest/system/sysconfig.xml",
        Some("smf/sysconfig-dev.xml")
    ));
    assert!(has(
        "ensure_file",
        "file",
        "/lib/svc/manifest/system/dev-9p-mount.xml",
        Some("smf/dev-9p-mount.xml")
    ));
    assert!(has(
        "ensure_file",
        "file",
        "/lib/svc/method/dev-9p-mount",
        Some("smf/method/dev-9p-mount")
    ));
    assert!(has("assemble_files", "output", "/etc/vfstab", None));
}

/// What a Linux host (no devfsadm, no illumos svccfg) is told about the cloud images, and
/// that the two first-boot flags are all it needs to pass the check before a build.
#[test]
fn cloud_images_pass_the_linux_preflight_with_the_first_boot_flags() {
    use image_builder::build::{preflight, BuildOptions};
    use image_builder::host::Host;
    use image_builder::steps::{DevfsSetup, SmfSeeding};

    let (root, _) = shipped();
    for name in ["ttya-openindiana-hipster", "ttya-openindiana-hipster-dev"] {
        let p = plan(
            &root,
            "cloudimage",
            name,
            &Features::default(),
            &PlanOptions::default(),
        );
        let opts = BuildOptions {
            svccfg: PathBuf::from("/nonexistent/svccfg"),
            ..BuildOptions::new("rpool/images", &root)
        };
        let e = preflight(&p, &opts, Host::Linux).unwrap_err().to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{name}: {e}");
        assert!(
            lines[0].contains("(devfsadm, ")
                && lines[0].ends_with("include/devfs.json steps[0]) needs /usr/sbin/devfsadm, which this Linux host does not have: devfsadm runs on an illumos host (or use --devfs-at-first-boot to leave /dev to the image's first boot, a reconfiguration boot)"),
            "{name}: {e}"
        );
        assert!(
            lines[1].contains("(seed_smf, ")
                && lines[1].contains("needs svccfg at /nonexistent/svccfg")
                && lines[1].contains("--smf-at-first-boot"),
            "{name}: {e}"
        );
        let devfs_only = BuildOptions {
            devfs: DevfsSetup::AtFirstBoot,
            ..opts.clone()
        };
        let e = preflight(&p, &devfs_only, Host::Linux)
            .unwrap_err()
            .to_string();
        assert_eq!(e.lines().count(), 1, "{name}: {e}");
        assert!(e.contains("(seed_smf, "), "{name}: {e}");
        let both = BuildOptions {
            smf: SmfSeeding::AtFirstBoot,
            ..devfs_only
        };
        preflight(&p, &both, Host::Linux).unwrap();
    }
}

/// The README's main job: `example/pool` is a disk image of the archive the `example/hello`
/// stage packs, with a boot environment the pool boots from, and a Linux host builds both
/// with no first-boot flags (the README's command line passes none).
#[test]
fn example_pool_is_a_disk_image_of_the_hello_stage() {
    use image_builder::build::{preflight, BuildOptions};
    use image_builder::host::Host;
    use image_builder::template::load::Target;

    let (root, found) = shipped();
    for name in ["hello", "pool"] {
        assert!(
            found.contains(&("example".to_string(), name.to_string())),
            "example/{name} is not among the shipped templates: {found:?}"
        );
    }
    let p = |name: &str| {
        plan(
            &root,
            "example",
            name,
            &Features::default(),
            &PlanOptions::default(),
        )
    };
    let (hello, pool) = (p("hello"), p("pool"));
    let names = |p: &Plan, t: &str| -> Vec<String> {
        p.steps
            .iter()
            .filter(|s| s.t == t && s.skip.is_none())
            .map(|s| s.args["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(names(&hello, "pack_tar"), ["hello.tar.gz"]);
    assert_eq!(names(&pool, "unpack_tar"), names(&hello, "pack_tar"));

    let Some(Target::Pool(target)) = &pool.target else {
        panic!("example/pool is not a pool template: {:?}", pool.target);
    };
    assert_eq!(target.name, "rpool");
    assert_eq!(target.bename.as_deref(), Some("hello"));
    let order: Vec<&str> = pool.steps.iter().map(|s| s.t.as_str()).collect();
    assert_eq!(order[..2], ["create_be", "unpack_tar"], "{order:?}");
    assert!(order.contains(&"make_bootable"), "{order:?}");

    let opts = BuildOptions {
        svccfg: PathBuf::from("/nonexistent/svccfg"),
        ..BuildOptions::new("ibpool/images", &root)
    };
    for p in [&hello, &pool] {
        assert!(p.problems.is_empty(), "{}: {:?}", p.name, p.problems);
        preflight(p, &opts, Host::Linux)
            .unwrap_or_else(|e| panic!("example/{} on Linux: {e}", p.name));
    }
}
