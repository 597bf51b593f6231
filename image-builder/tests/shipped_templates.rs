//! Every template shipped in the project's templates/ tree validates.

use std::path::Path;

use image_builder::template::{plan, Features, PlanOptions};

#[test]
fn shipped_templates_validate_without_features() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let mut count = 0;
    for g in std::fs::read_dir(&root).unwrap() {
        let g = g.unwrap().path();
        let group = g.file_name().unwrap().to_string_lossy().into_owned();
        if !g.is_dir() || group == "include" || group == "files" {
            continue;
        }
        for t in std::fs::read_dir(&g).unwrap() {
            let f = t.unwrap().file_name().to_string_lossy().into_owned();
            let Some(name) = f.strip_suffix(".json") else {
                continue;
            };
            let p = plan(
                &root,
                &group,
                name,
                &Features::default(),
                &PlanOptions::default(),
            );
            let problems: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
            assert!(problems.is_empty(), "{group}/{name}: {problems:#?}");
            count += 1;
        }
    }
    assert!(count >= 3, "found only {count} templates");
}
