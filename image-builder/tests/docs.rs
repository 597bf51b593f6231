//! docs/templates.md documents every build target and step from the types themselves.

use image_builder::template::reference;

const BEGIN: &str = "<!-- BEGIN GENERATED REFERENCE";
const END: &str = "<!-- END GENERATED REFERENCE -->";

#[test]
fn templates_doc_reference_is_generated_from_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/templates.md");
    let doc = std::fs::read_to_string(path).expect("docs/templates.md exists");
    let start = doc.find(BEGIN).expect("begin marker");
    let body_start = start + doc[start..].find('\n').expect("marker line") + 2;
    let end = doc.find(END).expect("end marker");
    let want = reference::markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let new = format!("{}{}{}", &doc[..body_start], want, &doc[end..]);
        std::fs::write(path, new).expect("write docs");
        return;
    }
    assert!(
        doc[body_start..end] == want,
        "docs/templates.md is out of date with the step types; run `UPDATE_DOCS=1 cargo test -p image-builder --test docs`"
    );
}

#[test]
fn every_step_has_an_example_that_parses_as_that_step() {
    assert_eq!(reference::broken_examples(), Vec::<String>::new());
}

#[test]
fn every_step_and_field_is_in_the_reference() {
    let md = reference::markdown();
    let schema = reference::step_schema();
    for v in schema["oneOf"].as_array().unwrap() {
        let name = v["properties"]["t"]["const"].as_str().unwrap();
        let heading = format!("### `{name}`");
        let at = md
            .find(&heading)
            .unwrap_or_else(|| panic!("no section for {name}"));
        let section = &md[at..];
        let section = &section[..section[4..].find("### ").map_or(section.len(), |i| i + 4)];
        for field in v["properties"].as_object().unwrap().keys() {
            if field == "t" || field == "with" || field == "without" {
                continue;
            }
            assert!(
                section.contains(&format!("| `{field}` |")),
                "{name}.{field} undocumented"
            );
        }
    }
}

/// In the shell blocks of docs/getting-started.md, a dataset's mountpoint is read only
/// after a line of the same block creates that dataset (reading it first gave an empty
/// path, and the archive was copied to `/`).
#[test]
fn getting_started_creates_a_dataset_before_reading_its_mountpoint() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/getting-started.md");
    let doc = std::fs::read_to_string(path).expect("docs/getting-started.md exists");
    let mut checked = 0;
    for block in doc.split("```sh").skip(1) {
        let block = block.split("```").next().unwrap_or("");
        let lines: Vec<&str> = block.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(at) = line.find("mountpoint ") else {
                continue;
            };
            if !line.contains("zfs get") {
                continue;
            }
            let ds = line[at + "mountpoint ".len()..]
                .split(|c: char| c.is_whitespace() || c == ')')
                .next()
                .unwrap();
            let created = lines[..i]
                .iter()
                .any(|l| l.contains("zfs create") && l.split_whitespace().any(|w| w == ds));
            assert!(
                created,
                "getting-started.md reads the mountpoint of {ds} before creating it"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no mountpoint read found: the test checks nothing"
    );
}
