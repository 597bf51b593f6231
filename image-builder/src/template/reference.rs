//! The template reference, derived from the step and target types themselves: the JSON
//! Schema of a step, and the Markdown tables of `docs/templates.md`. A field added to a
//! step struct shows up here without anyone remembering to document it.

use serde_json::{json, Map, Value};

use super::load::parse_step;
use super::model::{Dataset, Iso, Pcfs, Pool, StepKind, Ufs, Zone};

/// The JSON Schema of one step, including the `with`/`without` every step may carry.
pub fn step_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(StepKind)).unwrap_or_default();
    if let Some(Value::Array(variants)) = schema.get_mut("oneOf") {
        for v in variants {
            if let Some(Value::Object(props)) = v.get_mut("properties") {
                props.insert(
                    "with".into(),
                    json!({"type": "string", "description": "Run only when this feature is set."}),
                );
                props.insert(
                    "without".into(),
                    json!({"type": "string", "description": "Run only when this feature is not set."}),
                );
            }
        }
    }
    schema
}

/// One example per step type; tests check each parses as its type.
pub const STEP_EXAMPLES: &[(&str, &str)] = &[
    ("create_be", r#"{ "t": "create_be" }"#),
    (
        "create_dataset",
        r#"{ "t": "create_dataset", "name": "export/home", "mountpoint": "/export/home" }"#,
    ),
    ("make_bootable", r#"{ "t": "make_bootable" }"#),
    (
        "unpack_tar",
        r#"{ "t": "unpack_tar", "name": "${name}-base.tar.gz" }"#,
    ),
    (
        "pack_tar",
        r#"{ "t": "pack_tar", "name": "openindiana-hipster.tar.gz" }"#,
    ),
    (
        "remove_files",
        r#"{ "t": "remove_files", "pattern": "*.orig" }"#,
    ),
    (
        "ensure_dir",
        r#"{ "t": "ensure_dir", "dir": "/export/home", "owner": "root", "group": "sys", "mode": "755" }"#,
    ),
    (
        "ensure_file",
        r#"{ "t": "ensure_file", "file": "/etc/default/init", "src": "default_init.utc", "owner": "root", "group": "root", "mode": "644" }"#,
    ),
    (
        "ensure_symlink",
        r#"{ "t": "ensure_symlink", "link": "/etc/svc/profile/generic.xml", "target": "generic_limited_net.xml", "owner": "root", "group": "root" }"#,
    ),
    (
        "ensure_perms",
        r#"{ "t": "ensure_perms", "path": "/var/tmp", "owner": "root", "group": "sys", "mode": "1777" }"#,
    ),
    (
        "shadow",
        r#"{ "t": "shadow", "username": "root", "password": "$5$kr1VgdIt$OUiUAyZCDogH/uaxH71rMeQxvpDEY2yX.x0ZQRnmeb9" }"#,
    ),
    (
        "assemble_files",
        r#"{ "t": "assemble_files", "dir": "/etc/system.d", "output": "/etc/system.d/.self-assembly" }"#,
    ),
    (
        "gzip",
        r#"{ "t": "gzip", "src": "${name}-ramdisk.ufs", "target": "/platform/i86pc/amd64/boot_archive", "owner": "root", "group": "root", "mode": "444" }"#,
    ),
    (
        "digest",
        r#"{ "t": "digest", "algorithm": "sha1", "src": "${name}-ramdisk.ufs", "target": "/platform/i86pc/amd64/boot_archive.hash", "owner": "root", "group": "root", "mode": "444" }"#,
    ),
    ("devfsadm", r#"{ "t": "devfsadm" }"#),
    (
        "seed_smf",
        r#"{ "t": "seed_smf", "apply_profiles": ["generic", "platform"] }"#,
    ),
    (
        "pkg_image_create",
        r#"{ "t": "pkg_image_create", "publisher": "openindiana.org", "uri": "http://pkg.openindiana.org/hipster/" }"#,
    ),
    (
        "pkg_set_publisher",
        r#"{ "t": "pkg_set_publisher", "publisher": "${publisher}", "uri": "https://pkg.example.org/${publisher}/" }"#,
    ),
    (
        "pkg_approve_ca_cert",
        r#"{ "t": "pkg_approve_ca_cert", "publisher": "example", "certfile": "example-ca.pem" }"#,
    ),
    (
        "pkg_set_property",
        r#"{ "t": "pkg_set_property", "name": "flush-content-cache-on-success", "value": "True" }"#,
    ),
    (
        "pkg_install",
        r#"{ "t": "pkg_install", "pkgs": ["entire", "${@extra_pkgs}"], "include_optional": true }"#,
    ),
    (
        "pkg_uninstall",
        r#"{ "t": "pkg_uninstall", "pkgs": ["service/network/smtp/sendmail"] }"#,
    ),
    (
        "pkg_change_variant",
        r#"{ "t": "pkg_change_variant", "variant": "opensolaris.zone", "value": "global" }"#,
    ),
    (
        "pkg_change_facet",
        r#"{ "t": "pkg_change_facet", "facet": "doc.man", "value": "false" }"#,
    ),
    ("pkg_purge_history", r#"{ "t": "pkg_purge_history" }"#),
    (
        "onu",
        r#"{ "t": "onu", "repo": "${onu}", "publisher": "${publisher}", "with": "onu" }"#,
    ),
    ("include", r#"{ "t": "include", "name": "devfs" }"#),
];

/// One example per build target.
pub const TARGET_EXAMPLES: &[(&str, &str)] = &[
    (
        "dataset",
        r#""dataset": { "name": "hipster", "input_snapshot": "strap", "output_snapshot": "image" }"#,
    ),
    (
        "pool",
        r#""pool": { "name": "rpool", "size": 2000, "ashift": 12, "uefi": true }"#,
    ),
    ("ufs", r#""ufs": { "size": 500, "inode_density": 4096 }"#),
    ("pcfs", r#""pcfs": { "label": "ESP", "size": 256 }"#),
    (
        "iso",
        r#""iso": { "volume_id": "${name}", "boot_bios": "boot/cdboot", "boot_uefi": "boot/efiboot.img" }"#,
    ),
    (
        "zone",
        r#""zone": { "name": "base", "brand": "sparse", "outputs": ["tarball", "stream"], "compression": "gzip", "version": "1.0.0" }"#,
    ),
];

/// The generated part of `docs/templates.md`.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str("## Build targets\n\nA template has exactly one of these top-level objects (an include has none).\n\n");
    let targets: [(&str, Value); 6] = [
        ("dataset", schema_of::<Dataset>()),
        ("pool", schema_of::<Pool>()),
        ("ufs", schema_of::<Ufs>()),
        ("pcfs", schema_of::<Pcfs>()),
        ("iso", schema_of::<Iso>()),
        ("zone", schema_of::<Zone>()),
    ];
    for (name, schema) in &targets {
        section(
            &mut out,
            name,
            schema,
            example(TARGET_EXAMPLES, name).map(|e| format!("{{ {e}, \"steps\": [] }}")),
        );
    }
    out.push_str("## Steps\n\nEvery step is an object with a `t` naming its type, and may carry `with` (run only when that feature is set) and `without` (run only when it is not set).\n\n");
    let schema = serde_json::to_value(schemars::schema_for!(StepKind)).unwrap_or_default();
    for v in schema["oneOf"].as_array().into_iter().flatten() {
        let name = v["properties"]["t"]["const"].as_str().unwrap_or("?");
        section(
            &mut out,
            name,
            v,
            example(STEP_EXAMPLES, name).map(str::to_string),
        );
    }
    out
}

fn schema_of<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

fn example<'a>(table: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    table.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
}

fn section(out: &mut String, name: &str, schema: &Value, example: Option<String>) {
    out.push_str(&format!("### `{name}`\n\n"));
    if let Some(d) = schema["description"].as_str() {
        out.push_str(&unwrap_lines(d));
        out.push_str("\n\n");
    }
    if name == "ensure_dir" {
        out.push_str("Also accepted as `ensure_directory`.\n\n");
    }
    let empty = Map::new();
    let props = schema["properties"].as_object().unwrap_or(&empty);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let fields: Vec<(&String, &Value)> = props.iter().filter(|(k, _)| *k != "t").collect();
    if fields.is_empty() {
        out.push_str("No fields.\n\n");
    } else {
        out.push_str("| field | type | required | meaning |\n|---|---|---|---|\n");
        for (k, v) in fields {
            let req = if required.contains(&k.as_str()) {
                "yes"
            } else {
                "no"
            };
            let desc = unwrap_lines(v["description"].as_str().unwrap_or("")).replace('|', "\\|");
            out.push_str(&format!("| `{k}` | {} | {req} | {desc} |\n", type_of(v)));
        }
        out.push('\n');
    }
    if let Some(e) = example {
        out.push_str(&format!("```json\n{e}\n```\n\n"));
    }
}

fn unwrap_lines(s: &str) -> String {
    s.split("\n\n")
        .map(|p| p.split('\n').collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn type_of(v: &Value) -> String {
    let base = |t: &Value| -> Vec<String> {
        match t {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    let mut types: Vec<String> = base(&v["type"])
        .into_iter()
        .filter(|t| t != "null")
        .collect();
    if types.is_empty() && v.get("anyOf").is_some() {
        types.push("object".into());
    }
    types
        .into_iter()
        .map(|t| {
            if t == "array" {
                format!("array of {}", type_of(&v["items"]))
            } else {
                t
            }
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Every step name with an example that does not parse as that step (empty when all do).
pub fn broken_examples() -> Vec<String> {
    let mut bad = Vec::new();
    for name in StepKind::NAMES {
        match example(STEP_EXAMPLES, name) {
            None => bad.push(format!("{name}: no example")),
            Some(e) => match serde_json::from_str(e)
                .map_err(|e| e.to_string())
                .and_then(|v| parse_step(&v).map_err(|e| e.1))
            {
                Ok(s) if s.kind.name() == *name => {}
                Ok(s) => bad.push(format!("{name}: example parses as {}", s.kind.name())),
                Err(e) => bad.push(format!("{name}: {e}")),
            },
        }
    }
    bad
}
