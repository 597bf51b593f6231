//! `matrix --emit`: the pipelines validate against each engine's published schema
//! (check-jsonschema's vendored `vendor.github-workflows` and `vendor.gitlab-ci`, PyPI
//! `check-jsonschema`, run by Debian's python3), and their jobs follow the matrix's order.
//! Without check-jsonschema the schema checks say `skipped: ...`, except under CI.

use std::path::Path;
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";
const STORE: &str = "oci://127.0.0.1:5000/ib/stages";

const TEMPLATES: &[(&str, &str)] = &[
    (
        "g/s1.json",
        r#"{ "dataset": { "name": "w", "output_snapshot": "one" }, "steps": [
            { "t": "ensure_file", "file": "/a", "contents": "a\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
    (
        "g/s2.json",
        r#"{ "dataset": { "name": "w", "input_snapshot": "one", "output_snapshot": "two" }, "steps": [
            { "t": "ensure_file", "file": "/b", "contents": "b\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
    (
        "g/s3.json",
        r#"{ "dataset": { "name": "w", "input_snapshot": "two" }, "steps": [
            { "t": "pack_tar", "name": "w.tar.gz" } ] }"#,
    ),
    (
        "g/esp.json",
        r#"{ "pcfs": { "label": "ESP", "size": 33 }, "steps": [
            { "t": "unpack_tar", "name": "w.tar.gz" } ] }"#,
    ),
];

/// The matrix lists the image first and the stages out of order: the pipeline must not.
const MATRIX: &str = r#"{ "builds": [
    { "group": "g", "name": "esp", "test": true },
    { "group": "g", "name": "s3" },
    { "group": "g", "name": "s1" },
    { "group": "g", "name": "s2", "features": ["debug"] } ] }"#;

fn emit(dir: &Path, engine: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .current_dir(dir)
        .args([
            "matrix",
            "m.json",
            "-d",
            "rpool/images",
            "-T",
            "t",
            "--store",
            STORE,
            "--emit",
            engine,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn world() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in TEMPLATES {
        let p = dir.path().join("t").join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::write(dir.path().join("m.json"), MATRIX).unwrap();
    dir
}

/// The document after the header comment (JSON, which is YAML too).
fn doc(text: &str) -> serde_json::Value {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&body).unwrap()
}

fn validate(file: &Path, schema: &str) {
    let have = Command::new(PYTHON)
        .args(["-c", "import check_jsonschema"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        let why = "check-jsonschema is missing (pip install check-jsonschema)";
        eprintln!("skipped: {why}");
        assert!(std::env::var_os("CI").is_none_or(|v| v.is_empty()), "{why}");
        return;
    }
    let o = Command::new(PYTHON)
        .args(["-m", "check_jsonschema", "--builtin-schema", schema])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{schema}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn needs(job: &serde_json::Value) -> Vec<String> {
    job["needs"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn github_actions_workflow_validates_and_follows_the_matrix_order() {
    let w = world();
    let text = emit(w.path(), "github-actions");
    let file = w.path().join("workflow.yml");
    std::fs::write(&file, &text).unwrap();
    validate(&file, "vendor.github-workflows");
    let d = doc(&text);
    let jobs = d["jobs"].as_object().unwrap();
    let ids: Vec<&String> = jobs.keys().collect();
    assert_eq!(
        ids,
        [
            "build-g-esp",
            "build-g-s1",
            "build-g-s2-debug",
            "build-g-s3",
            "test-g-esp",
            "report"
        ]
    );
    assert!(needs(&jobs["build-g-s1"]).is_empty());
    assert_eq!(needs(&jobs["build-g-s2-debug"]), ["build-g-s1"]);
    assert_eq!(needs(&jobs["build-g-s3"]), ["build-g-s2-debug"]);
    // The image unpacks the archive s3 packs.
    assert_eq!(needs(&jobs["build-g-esp"]), ["build-g-s3"]);
    assert_eq!(needs(&jobs["test-g-esp"]), ["build-g-esp"]);
    assert_eq!(needs(&jobs["report"]).len(), 5);
    assert_eq!(jobs["report"]["if"], "${{ always() }}");
    let run = jobs["build-g-s2-debug"]["steps"][1]["run"]
        .as_str()
        .unwrap();
    assert_eq!(
        run,
        format!("image-builder build -d rpool/images -T t --store {STORE} -g g -n s2 -F debug")
    );
    for (id, job) in jobs {
        let script = job["steps"][1]["run"].as_str().unwrap();
        assert!(
            script.contains(&format!("--store {STORE}")),
            "{id}: {script}"
        );
        assert_eq!(
            job["env"]["IMAGE_BUILDER_STORE_PASSWORD"],
            "${{ secrets.IMAGE_BUILDER_STORE_PASSWORD }}"
        );
    }
    let test = jobs["test-g-esp"]["steps"][1]["run"].as_str().unwrap();
    assert!(
        test.ends_with(
            "image-builder test --report test-report/test-g-esp \
             \"$(zfs get -H -o value mountpoint rpool/images/output)\"/g-esp.pcfs"
        ),
        "{test}"
    );
}

#[test]
fn gitlab_ci_pipeline_validates_and_follows_the_matrix_order() {
    let w = world();
    let text = emit(w.path(), "gitlab-ci");
    let file = w.path().join(".gitlab-ci.yml");
    std::fs::write(&file, &text).unwrap();
    validate(&file, "vendor.gitlab-ci");
    let d = doc(&text);
    assert_eq!(d["stages"], serde_json::json!(["build", "test", "report"]));
    assert_eq!(needs(&d["build-g-s3"]), ["build-g-s2-debug"]);
    assert_eq!(d["build-g-s1"]["needs"], serde_json::json!([]));
    assert_eq!(d["test-g-esp"]["stage"], "test");
    assert_eq!(d["report"]["stage"], "report");
    assert_eq!(d["report"]["when"], "always");
    assert_eq!(
        d["report"]["script"][0],
        format!(
            "image-builder matrix m.json -d rpool/images -T t --store {STORE} --report test-report"
        )
    );
}

#[test]
fn emit_needs_a_store() {
    let w = world();
    let o = Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .current_dir(w.path())
        .args([
            "matrix",
            "m.json",
            "-d",
            "rpool/images",
            "-T",
            "t",
            "--emit",
            "gitlab-ci",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--store <URL>"));
}
