//! docs/sysconfig.md must cover every configuration key, every desired-configuration key
//! and every shipped plugin: a new field without documentation fails here.

use serde_json::Value;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sysconfig.md")).unwrap()
}

fn props(schema: &Value, def: Option<&str>) -> Vec<String> {
    let node = match def {
        Some(d) => &schema["$defs"][d],
        None => schema,
    };
    node["properties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn every_sysconfig_toml_key_is_documented() {
    let schema = serde_json::to_value(schemars::schema_for!(sysconfig::config::Config)).unwrap();
    let doc = doc();
    for (section, def) in [
        ("plugins", "Plugins"),
        ("logging", "Logging"),
        ("state", "State"),
        ("sources", "Sources"),
    ] {
        assert!(
            doc.contains(&format!("[{section}]")),
            "section [{section}] is not documented"
        );
        let keys = props(&schema, Some(def));
        assert!(!keys.is_empty());
        for k in keys {
            assert!(
                doc.contains(&format!("\n{k} = ")),
                "[{section}] {k} is not documented"
            );
        }
    }
}

#[test]
fn every_desired_key_and_plugin_is_documented() {
    let doc = doc();
    for k in props(&sysconfig::schema::Desired::json_schema(), None) {
        assert!(
            doc.contains(&format!("| `{k}` |")),
            "desired key {k} is not in the table"
        );
    }
    let bins = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin")).unwrap();
    for b in bins {
        let name = b.unwrap().file_name().to_string_lossy().replace(".rs", "");
        let Some(plugin) = name.strip_prefix("sysconfig-plugin-") else {
            continue;
        };
        assert!(
            sysconfig::plugins::SHIPPED.contains(&plugin),
            "{plugin} is not in SHIPPED"
        );
        assert!(
            doc.contains(&format!("- **{plugin}**:")),
            "plugin {plugin} is not documented"
        );
    }
}

#[test]
fn the_published_json_schema_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sysconfig.schema.json");
    let published: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        published,
        sysconfig::schema::Desired::json_schema(),
        "docs/sysconfig.schema.json is stale: regenerate it with `sysconfig schema > docs/sysconfig.schema.json`"
    );
}
