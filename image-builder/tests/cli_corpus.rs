//! The command on the template corpus: feature directives, external sources, validate,
//! build and plan on real templates.

use std::path::Path;

use crate::cli::{assert_no_panic, run, stderr};

/// One tree of the corpus (see `corpus::corpus`): missing, a test says `skipped: ...`
/// and passes, except under CI.
fn corpus() -> Option<String> {
    crate::corpus::corpus().map(|p| p.join("toasterson-installer").display().to_string())
}

#[test]
fn bad_feature_directives_exit_2_with_the_directive_named() {
    let Some(corpus) = corpus() else { return };
    for bad in [
        "^a+=x", "^a=1", "1abc", "a=", "a+=", "a-", "a--b=1", "=x", "",
    ] {
        let o = run(&[
            "build",
            "-d",
            "rpool/images",
            "-g",
            "openindiana",
            "-n",
            "hipster-01-strap",
            "-T",
            &corpus,
            "-F",
            bad,
        ]);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with(&format!("error: invalid feature directive {bad:?}: ")),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn external_source_directories_must_exist() {
    let Some(corpus) = corpus() else { return };
    let o = run(&[
        "validate",
        "-T",
        &corpus,
        "-g",
        "openindiana",
        "-n",
        "hipster-01-strap",
        "-E",
        "/nonexistent/proto",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: -E /nonexistent/proto: external file source must be an existing directory\n"
    );
}

#[test]
fn validate_exit_status_follows_errors() {
    let Some(corpus) = corpus() else { return };
    let ok = run(&[
        "validate",
        "-T",
        &corpus,
        "-g",
        "openindiana",
        "-n",
        "hipster-02-image",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        stderr(&ok),
        "openindiana/hipster-02-image: 0 error(s), 0 warning(s), 4 step(s)\n"
    );
    let bad = run(&[
        "validate",
        "-T",
        &corpus,
        "-g",
        "installer",
        "-n",
        "generic-ttya-zfs",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("steps[8].src: source file \"install-helios.sh\" not found"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn build_refuses_ips_steps_on_a_host_without_pkg_before_touching_anything() {
    let Some(corpus) = corpus() else { return };
    if Path::new("/usr/bin/pkg").exists() {
        eprintln!("skipped: this host has pkg(1)");
        return;
    }
    let o = run(&[
        "build",
        "-d",
        "rpool/images",
        "-T",
        &corpus,
        "-g",
        "openindiana",
        "-n",
        "hipster-01-strap",
    ]);
    assert_no_panic(&o);
    // A build this host cannot run is refused before it starts: bad usage (2).
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.starts_with("error: step 0 (pkg_image_create, "), "{e}");
    assert!(e.contains("needs /usr/bin/pkg, which this Linux host does not have: IPS steps run on an illumos host"), "{e}");
    assert_eq!(e.matches("needs /usr/bin/pkg").count(), 4, "{e}");
}

#[test]
fn plan_json_lists_expanded_steps_with_their_sources() {
    let Some(corpus) = corpus() else { return };
    let present = format!("{}/UPSTREAM-FILES.txt", corpus);
    let o = run(&[
        "plan",
        "--json",
        "-T",
        &corpus,
        "--assume-present",
        &present,
        "-g",
        "cloudimage",
        "-n",
        "ttya-openindiana-hipster",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["target"]["kind"], "pool");
    assert_eq!(v["target"]["name"], "rpool");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["t"], "create_be");
    assert_eq!(steps[1]["args"]["name"], "openindiana-hipster.tar.gz");
    let devfs = steps.iter().find(|s| s["t"] == "devfsadm").unwrap();
    assert!(devfs["file"]
        .as_str()
        .unwrap()
        .ends_with("include/devfs.json"));
    assert_eq!(devfs["step_index"], 0);
}
