//! Validating every corpus template: `cargo bench -p image-builder --bench validate`.
//! Target: all 44 main templates together in under 100 ms (release build).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_builder::template::load::main_templates;
use image_builder::template::{plan, Features, PlanOptions};

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    let features = Features::from_directives([
        "name=helios",
        "heliosver=2.0",
        "publisher=helios-dev",
        "console=ttya",
        "baud=115200",
        "ufs=generic-ttya-ufs",
        "iso_type=generic",
        "no-metadata-agent",
    ])
    .expect("features");
    let mut templates: Vec<(PathBuf, String, String)> = Vec::new();
    for tree in ["helios-engvm", "toasterson-installer"] {
        let root = corpus.join(tree);
        for (g, n) in main_templates(&root).expect("corpus tree") {
            templates.push((root.clone(), g, n));
        }
    }
    let runs = 30;
    let mut times: Vec<Duration> = Vec::new();
    let mut problems = 0;
    for _ in 0..runs {
        let start = Instant::now();
        problems = 0;
        for (root, g, n) in &templates {
            let p = plan(root, g, n, &features, &PlanOptions::default());
            problems += p.problems.len();
        }
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "validate: {} templates, {problems} problems; median {:.1} ms, min {:.1} ms, max {:.1} ms over {runs} runs (target < 100 ms)",
        templates.len(),
        times[runs / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[runs - 1].as_secs_f64() * 1e3,
    );
}
