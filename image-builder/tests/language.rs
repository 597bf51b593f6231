//! The template language's rules, on template trees made in temporary directories.

use std::path::Path;

use image_builder::template::{plan, Features, Plan, PlanOptions, Severity};
use tempfile::TempDir;

fn tree(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn plan_of(dir: &Path, name: &str, features: &[&str]) -> Plan {
    let f = Features::from_directives(features).unwrap();
    plan(dir, "g", name, &f, &PlanOptions::default())
}

/// Every error as "file-relative-to-root:line:col: path: message".
fn errors(p: &Plan, root: &Path) -> Vec<String> {
    p.errors()
        .map(|e| {
            let file = e.file.strip_prefix(root).unwrap().display();
            match (e.line, e.column) {
                (Some(l), Some(c)) => format!("{file}:{l}:{c}: {}: {}", e.path, e.message),
                _ => format!("{file}: {}: {}", e.path, e.message),
            }
        })
        .collect()
}

const DS: &str = r#""dataset": { "name": "d" }"#;

#[test]
fn every_problem_is_reported_with_file_path_line_and_column() {
    let t = tree(&[(
        "g/t.json",
        &format!(
            r#"{{ {DS},
  "steps": [
    {{ "t": "ensure_dir", "dir": "/a", "owner": "root", "group": "sys", "mode": "64x" }},
    {{ "t": "ensure_dir", "dir": "/b", "owner": "rooot", "group": "sys", "mode": "755" }},
    {{ "t": "ensure_dir", "dir": "/c", "owner": "root", "group": "sys", "mdoe": "755" }},
    {{ "t": "ensure_fil", "file": "/x" }},
    {{ "t": "unpack_tar", "name": "${{nosuch}}.tar" }}
  ]
}}"#
        ),
    )]);
    let p = plan_of(t.path(), "t", &[]);
    let mut got = errors(&p, t.path());
    got.sort();
    let mut want = vec![
        "g/t.json:5:72: steps[2].mdoe: unknown field `mdoe`, expected one of `dir`, `owner`, `group`, `mode`; did you mean `mode`?",
        "g/t.json:6:7: steps[3].t: unknown step type \"ensure_fil\"; did you mean \"ensure_file\"? (see docs/templates.md for the list)",
        "g/t.json:7:26: steps[4].name: feature \"nosuch\" is not defined (set it with `-F nosuch=VALUE`) in \"${nosuch}.tar\"",
        "g/t.json:3:72: steps[0].mode: invalid mode \"64x\": expected an octal mode from \"0\" to \"7777\", such as \"644\"",
        "g/t.json:4:39: steps[1].owner: unknown user \"rooot\": expected a numeric id or an illumos base system user (root, daemon, bin, sys, adm, uucp, nuucp, dladm, smmsp, listen, gdm, lp, webservd, postgres, nobody, noaccess, nobody4); did you mean \"root\"?",
    ];
    want.sort();
    assert_eq!(got, want);
}

fn steps(p: &Plan) -> Vec<(String, Option<String>)> {
    p.steps
        .iter()
        .map(|s| (s.t.clone(), s.skip.clone()))
        .collect()
}

#[test]
fn includes_resolve_group_first_then_global_and_splice_in_order() {
    let t = tree(&[
        (
            "g/t.json",
            &format!(
                r#"{{ {DS}, "steps": [ {{ "t": "include", "name": "a" }}, {{ "t": "include", "name": "b" }}, {{ "t": "devfsadm" }} ] }}"#
            ),
        ),
        (
            "g/include/a.json",
            r#"{ "steps": [ { "t": "pkg_purge_history" } ] }"#,
        ),
        ("include/a.json", r#"{ "steps": [ { "t": "seed_smf" } ] }"#),
        (
            "include/b.json",
            r#"{ "steps": [ { "t": "seed_smf" }, { "t": "include", "name": "c" } ] }"#,
        ),
        (
            "include/c.json",
            r#"{ "steps": [ { "t": "create_be", "with": "never" } ] }"#,
        ),
    ]);
    let p = plan_of(t.path(), "t", &[]);
    assert!(p.is_valid(), "{:?}", p.problems);
    let names: Vec<String> = p.steps.iter().map(|s| s.t.clone()).collect();
    // Active includes are replaced by the steps they bring in.
    assert_eq!(
        names,
        ["pkg_purge_history", "seed_smf", "create_be", "devfsadm"]
    );
    let nested = &p.steps[2];
    assert!(nested.file.ends_with("include/c.json"));
    assert_eq!(nested.included_from.len(), 2);
    assert!(
        nested.included_from[0].ends_with("g/t.json steps[1]"),
        "{:?}",
        nested.included_from
    );
    assert!(
        nested.included_from[1].ends_with("include/b.json steps[1]"),
        "{:?}",
        nested.included_from
    );
}

#[test]
fn include_cycles_are_errors_naming_the_cycle() {
    let t = tree(&[
        (
            "g/t.json",
            &format!(r#"{{ {DS}, "steps": [ {{ "t": "include", "name": "a" }} ] }}"#),
        ),
        (
            "include/a.json",
            r#"{ "steps": [ { "t": "include", "name": "b" } ] }"#,
        ),
        (
            "include/b.json",
            r#"{ "steps": [ { "t": "include", "name": "a" } ] }"#,
        ),
    ]);
    let p = plan_of(t.path(), "t", &[]);
    let e = errors(&p, t.path());
    assert_eq!(e.len(), 1, "{e:?}");
    let r = t.path().display().to_string();
    assert_eq!(
        e[0],
        format!("include/b.json:1:14: steps[0]: include cycle: {r}/include/a.json -> {r}/include/b.json -> {r}/include/a.json")
    );
}

#[test]
fn includes_honour_with_and_without_before_loading() {
    let t = tree(&[(
        "g/t.json",
        &format!(
            r#"{{ {DS}, "steps": [ {{ "t": "include", "name": "missing", "with": "x" }}, {{ "t": "include", "name": "absent", "without": "y" }} ] }}"#
        ),
    )]);
    let p = plan_of(t.path(), "t", &["y"]);
    assert!(p.is_valid(), "{:?}", p.problems);
    assert_eq!(
        steps(&p),
        [
            (
                "include".into(),
                Some("\"with\": \"x\" and feature \"x\" is not set".into())
            ),
            (
                "include".into(),
                Some("\"without\": \"y\" and feature \"y\" is set".into())
            ),
        ]
    );
    let p = plan_of(t.path(), "t", &["x"]);
    let e = errors(&p, t.path());
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with(
            "g/t.json:1:60: steps[0].name: include \"missing\" not found; looked for "
        ),
        "{}",
        e[0]
    );
}

#[test]
fn include_by_file_is_macro_expanded_and_must_be_absolute() {
    let t = tree(&[("extra/x.json", r#"{ "steps": [ { "t": "devfsadm" } ] }"#)]);
    let dir = t.path().display().to_string();
    std::fs::create_dir_all(t.path().join("g")).unwrap();
    std::fs::write(
        t.path().join("g/t.json"),
        format!(r#"{{ {DS}, "steps": [ {{ "t": "include", "file": "${{d}}/x.json" }}, {{ "t": "include", "file": "rel.json" }} ] }}"#),
    )
    .unwrap();
    let p = plan_of(t.path(), "t", &[&format!("d={dir}/extra")]);
    assert_eq!(p.steps[0].t, "devfsadm");
    assert_eq!(
        errors(&p, t.path()),
        ["g/t.json:1:103: steps[1].file: include file \"rel.json\" must be an absolute path"]
    );
}

#[test]
fn skipped_steps_are_not_expanded_but_their_macros_are_parsed() {
    let t = tree(&[(
        "g/t.json",
        &format!(
            r#"{{ {DS}, "steps": [
  {{ "t": "onu", "with": "onu", "repo": "${{onu}}", "publisher": "${{publisher}}" }},
  {{ "t": "unpack_tar", "with": "never", "name": "${{broken" }}
] }}"#
        ),
    )]);
    let p = plan_of(t.path(), "t", &[]);
    assert_eq!(
        errors(&p, t.path()),
        ["g/t.json:3:41: steps[1].name: unterminated `${` in \"${broken\""]
    );
    assert_eq!(p.steps[0].args["repo"], "${onu}");
    let p = plan_of(t.path(), "t", &["onu=http://r/", "publisher=p"]);
    assert_eq!(p.steps[0].args["repo"], "http://r/");
    assert_eq!(p.steps[0].skip, None);
}

#[test]
fn shadow_hashes_and_contents_are_never_expanded() {
    let t = tree(&[(
        "g/t.json",
        &format!(
            r#"{{ {DS}, "steps": [
  {{ "t": "shadow", "username": "root", "password": "$5$kr1VgdIt$OUiUAyZCDogH" }},
  {{ "t": "ensure_file", "file": "/etc/motd", "contents": "costs $5", "owner": "root", "group": "root", "mode": "644" }}
] }}"#
        ),
    )]);
    let p = plan_of(t.path(), "t", &[]);
    assert!(p.is_valid(), "{:?}", p.problems);
    assert_eq!(p.steps[0].args["password"], "$5$kr1VgdIt$OUiUAyZCDogH");
    assert_eq!(p.steps[1].args["contents"], "costs $5");
}

#[test]
fn list_fields_take_multi_value_macros() {
    let t = tree(&[(
        "g/t.json",
        &format!(
            r#"{{ {DS}, "steps": [ {{ "t": "pkg_install", "pkgs": [ "entire", "${{@@extra}}", "${{@none}}", "opte@${{v}}" ] }}, {{ "t": "seed_smf", "apply_profiles": [ "generic", "${{site?site}}" ] }} ] }}"#
        ),
    )]);
    let p = plan_of(t.path(), "t", &["extra+=vim", "extra+=rsync", "v=1.0"]);
    assert!(p.is_valid(), "{:?}", p.problems);
    assert_eq!(
        p.steps[0].args["pkgs"],
        serde_json::json!(["entire", "vim", "rsync", "opte@1.0"])
    );
    assert_eq!(
        p.steps[1].args["apply_profiles"],
        serde_json::json!(["generic"])
    );
}

/// `${@f}` of an unset feature is no element; `${@@f}` of one is an error at its place,
/// as in the illumos image-builder.
#[test]
fn single_at_may_be_unset_double_at_may_not() {
    let t = tree(&[(
        "g/t.json",
        &format!(
            r#"{{ {DS}, "steps": [
  {{ "t": "pkg_install", "pkgs": [ "entire", "${{@extra}}" ] }},
  {{ "t": "pkg_install", "pkgs": [ "entire", "${{@@must}}" ] }}
] }}"#
        ),
    )]);
    let p = plan_of(t.path(), "t", &[]);
    assert_eq!(p.steps[0].args["pkgs"], serde_json::json!(["entire"]));
    assert_eq!(
        errors(&p, t.path()),
        ["g/t.json:3:45: steps[1].pkgs[1]: feature \"must\" is not defined (use `${@must}` if it may be unset) in \"${@@must}\""]
    );
    let p = plan_of(t.path(), "t", &["must+=a", "must+=b"]);
    assert!(p.is_valid(), "{:?}", p.problems);
    assert_eq!(
        p.steps[1].args["pkgs"],
        serde_json::json!(["entire", "a", "b"])
    );
}

#[test]
fn ensure_file_sources_are_checked_and_extra_sources_warned() {
    let t = tree(&[
        (
            "g/t.json",
            &format!(
                r#"{{ {DS}, "steps": [
  {{ "t": "ensure_file", "file": "/a", "src": "here", "contents": "x", "owner": "root", "group": "root", "mode": "644" }},
  {{ "t": "ensure_file", "file": "/b", "src": "nothere", "owner": "root", "group": "root", "mode": "644" }},
  {{ "t": "ensure_file", "file": "c", "owner": "root", "group": "root", "mode": "644" }}
] }}"#
            ),
        ),
        ("files/here", "x"),
    ]);
    let p = plan_of(t.path(), "t", &[]);
    let warnings: Vec<String> = p
        .warnings()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    assert_eq!(
        warnings,
        ["steps[0].src: several sources given; `src` is used and contents ignored"]
    );
    let r = t.path().display().to_string();
    assert_eq!(
        errors(&p, t.path()),
        [
            format!("g/t.json:3:39: steps[1].src: source file \"nothere\" not found; looked for {r}/g/files/nothere and {r}/files/nothere"),
            "g/t.json:4:25: steps[2].file: \"c\" must be an absolute path inside the image".to_string(),
            "g/t.json:4:25: steps[2].file: no source: give one of src, extsrc, outputsrc, imagesrc, tarsrc or contents".to_string(),
        ]
    );
}

#[test]
fn targets_are_checked() {
    let t = tree(&[
        ("g/none.json", r#"{ "steps": [] }"#),
        (
            "g/two.json",
            r#"{ "dataset": { "name": "a" }, "pool": { "name": "rpool", "size": 100 }, "steps": [] }"#,
        ),
        (
            "g/ds.json",
            r#"{ "dataset": { "name": "a" }, "steps": [ { "t": "create_be" } ] }"#,
        ),
        (
            "g/inc.json",
            r#"{ "dataset": { "name": "a" }, "steps": [ { "t": "include", "name": "i" } ] }"#,
        ),
        (
            "include/i.json",
            r#"{ "pool": { "name": "p", "size": 1 }, "steps": [] }"#,
        ),
        (
            "g/typo.json",
            r#"{ "datset": { "name": "a" }, "pool": { "name": "rpool", "size": 100, "ashift": 20 }, "steps": [] }"#,
        ),
        (
            "g/badjson.json",
            "{ \"dataset\": { \"name\": \"a\" },\n  \"steps\": [ }",
        ),
    ]);
    let e = |n: &str| errors(&plan_of(t.path(), n, &[]), t.path());
    assert_eq!(e("none"), ["g/none.json: : a template needs exactly one build target: \"dataset\", \"pool\", \"ufs\", \"pcfs\", \"iso\" or \"zone\""]);
    assert_eq!(e("two"), ["g/two.json:1:31: pool: a template has exactly one build target, this one has \"dataset\", \"pool\""]);
    assert_eq!(e("ds"), ["g/ds.json:1:44: steps[0].t: create_be only works in a pool template, not in a dataset template"]);
    assert_eq!(
        e("inc"),
        ["include/i.json:1:3: pool: an include cannot have a build target (\"pool\")"]
    );
    assert_eq!(
        e("typo"),
        [
            "g/typo.json:1:3: datset: unknown top-level field \"datset\": expected one of dataset, pool, ufs, pcfs, iso, zone, steps; did you mean \"dataset\"?",
            "g/typo.json:1:70: pool.ashift: ashift 20 is out of range: expected 9 to 16",
        ]
    );
    assert_eq!(
        e("badjson"),
        ["g/badjson.json:2:14: : invalid JSON: expected value at line 2 column 14"]
    );
}

#[test]
fn missing_template_and_bad_names_are_reported_not_panics() {
    let t = tree(&[]);
    let e = errors(&plan_of(t.path(), "nope", &[]), t.path());
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("g/nope.json: : cannot read template: "),
        "{}",
        e[0]
    );
    let f = Features::default();
    let p = plan(t.path(), "../etc", "passwd", &f, &PlanOptions::default());
    assert_eq!(
        p.errors().next().unwrap().message,
        "invalid template group \"../etc\": expected a plain name"
    );
}

#[test]
fn ensure_directory_is_an_alias_and_conditions_must_be_names() {
    let t = tree(&[(
        "g/t.json",
        &format!(
            r#"{{ {DS}, "steps": [ {{ "t": "ensure_directory", "dir": "/d", "owner": "0", "group": "sys", "mode": "1777" }}, {{ "t": "devfsadm", "with": 3 }} ] }}"#
        ),
    )]);
    let p = plan_of(t.path(), "t", &[]);
    assert_eq!(p.steps[0].kind.as_ref().unwrap().name(), "ensure_dir");
    let e: Vec<_> = p
        .errors()
        .map(|e| (e.path.clone(), e.message.clone(), e.severity))
        .collect();
    assert_eq!(
        e,
        [(
            "steps[1].with".to_string(),
            "\"with\" must be a feature name, not 3".to_string(),
            Severity::Error
        )]
    );
}
