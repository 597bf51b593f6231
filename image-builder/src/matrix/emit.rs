//! `matrix --emit`: the matrix as a CI pipeline, one job per build, ordered by the
//! matrix's dependencies (a stage after the stage on its work dataset it starts from, a
//! build after the builds whose archives or images it reads), every job with the same
//! `--store`, so each job receives the stages the jobs before it pushed. Boot tests are
//! jobs of their own after their build; the report is the last job.
//!
//! The pipeline is written as JSON, which is YAML too (YAML 1.2 is a superset of JSON),
//! so every string is quoted right without a YAML writer; the tests validate it against
//! each engine's published schema (check-jsonschema's vendored copies).

use serde_json::{json, Map, Value};

use super::Job;
use crate::build::layout::ImageFile;

/// The CI engines a pipeline can be written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    GithubActions,
    GitlabCi,
}

/// What every job's command line needs besides the build itself.
#[derive(Debug, Clone)]
pub struct EmitOptions {
    /// The matrix file, as the pipeline's checkout sees it.
    pub matrix_file: String,
    /// `-d`
    pub dataset: String,
    /// `--store URL` (and `--store-required`), and the template flags (`-T`, `-F`, `-E`,
    /// `--smf-at-first-boot` ...), as given.
    pub common_args: Vec<String>,
    /// Where the report job writes matrix.json and matrix.md.
    pub report_dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Build,
    Test,
    Report,
}

/// One job of the pipeline.
#[derive(Debug, Clone)]
struct PipelineJob {
    id: String,
    title: String,
    kind: Kind,
    needs: Vec<String>,
    script: Vec<String>,
}

/// A word for a POSIX shell command line: as it is when plain, else in single quotes.
fn sh(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn line(words: &[String]) -> String {
    words.iter().map(|w| sh(w)).collect::<Vec<_>>().join(" ")
}

/// A job id both engines accept: `[a-z0-9_-]`, starting with a letter, unique.
fn job_id(prefix: &str, job: &Job, taken: &mut Vec<String>) -> String {
    let raw = format!(
        "{prefix}-{}-{}{}",
        job.entry.group,
        job.entry.output_name.as_deref().unwrap_or(&job.entry.name),
        if job.entry.features.is_empty() {
            String::new()
        } else {
            format!("-{}", job.entry.features.join("-"))
        }
    );
    let mut id: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    let id = id.trim_end_matches('-').to_string();
    let mut unique = id.clone();
    let mut n = 2;
    while taken.contains(&unique) {
        unique = format!("{id}-{n}");
        n += 1;
    }
    taken.push(unique.clone());
    unique
}

fn build_words(job: &Job, o: &EmitOptions) -> Vec<String> {
    let mut w: Vec<String> = ["image-builder", "build", "-d", &o.dataset]
        .iter()
        .map(|s| s.to_string())
        .collect();
    w.extend(o.common_args.iter().cloned());
    w.extend([
        "-g".into(),
        job.entry.group.clone(),
        "-n".into(),
        job.entry.name.clone(),
    ]);
    if let Some(out) = &job.entry.output_name {
        w.extend(["-N".into(), out.clone()]);
    }
    for f in &job.entry.features {
        w.extend(["-F".into(), f.clone()]);
    }
    w
}

fn jobs(chains: &[Vec<Job>], o: &EmitOptions) -> Vec<PipelineJob> {
    let flat: Vec<&Job> = chains.iter().flatten().collect();
    let mut taken = Vec::new();
    let ids: Vec<String> = flat
        .iter()
        .map(|j| job_id("build", j, &mut taken))
        .collect();
    let mut out = Vec::new();
    let mut start = 0;
    for chain in chains {
        for (k, job) in chain.iter().enumerate() {
            let i = start + k;
            let mut needs = Vec::new();
            if k > 0 {
                needs.push(ids[i - 1].clone());
            }
            let reads = job.reads();
            for (w, writer) in flat.iter().enumerate() {
                if w != i
                    && writer.writes().iter().any(|f| reads.contains(f))
                    && !needs.contains(&ids[w])
                {
                    needs.push(ids[w].clone());
                }
            }
            out.push(PipelineJob {
                id: ids[i].clone(),
                title: format!("build {}", job.entry.id()),
                kind: Kind::Build,
                needs,
                script: vec![line(&build_words(job, o))],
            });
        }
        start += chain.len();
    }
    // Boot tests: the build again (its stages come from the store), then its image.
    for (i, job) in flat.iter().enumerate() {
        let Some(target) = job.plan.target.as_ref().filter(|_| job.entry.test) else {
            continue;
        };
        let Some(image) = ImageFile::of(target).first().copied() else {
            continue;
        };
        let stem = format!(
            "{}-{}",
            job.plan.group,
            job.entry.output_name.as_deref().unwrap_or(&job.plan.name)
        );
        let id = job_id("test", job, &mut taken);
        let output = format!(
            "\"$(zfs get -H -o value mountpoint {}/output)\"/{}",
            sh(&o.dataset),
            sh(&image.name(&stem))
        );
        let report = format!("{}/{id}", o.report_dir);
        out.push(PipelineJob {
            id: id.clone(),
            title: format!("boot test {}", job.entry.id()),
            kind: Kind::Test,
            needs: vec![ids[i].clone()],
            script: vec![
                line(&build_words(job, o)),
                format!("image-builder test --report {} {output}", sh(&report)),
            ],
        });
    }
    let mut report = vec![
        "image-builder".to_string(),
        "matrix".into(),
        o.matrix_file.clone(),
    ];
    report.extend(["-d".into(), o.dataset.clone()]);
    report.extend(o.common_args.iter().cloned());
    report.extend(["--report".into(), o.report_dir.clone()]);
    out.push(PipelineJob {
        id: "report".into(),
        title: "matrix report".into(),
        kind: Kind::Report,
        needs: out.iter().map(|j| j.id.clone()).collect(),
        script: vec![line(&report)],
    });
    out
}

/// The pipeline file for `engine`.
pub fn render(engine: Engine, chains: &[Vec<Job>], o: &EmitOptions) -> String {
    let jobs = jobs(chains, o);
    let (name, doc) = match engine {
        Engine::GithubActions => ("github-actions", github(&jobs, o)),
        Engine::GitlabCi => ("gitlab-ci", gitlab(&jobs, o)),
    };
    format!(
        "# Generated by `image-builder matrix {} --emit {name}`: one job per build, in the \
         matrix's order,\n# every job with the same store. Regenerate rather than edit.\n{}\n",
        o.matrix_file,
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}

/// Store credentials for the jobs, from the CI's secrets (never in the file).
const CREDENTIALS: [&str; 2] = [
    "IMAGE_BUILDER_STORE_USERNAME",
    "IMAGE_BUILDER_STORE_PASSWORD",
];

fn github(jobs: &[PipelineJob], o: &EmitOptions) -> Value {
    let env: Map<String, Value> = CREDENTIALS
        .iter()
        .map(|k| (k.to_string(), json!(format!("${{{{ secrets.{k} }}}}"))))
        .collect();
    let mut out = Map::new();
    for j in jobs {
        let mut job = Map::new();
        job.insert("name".into(), json!(j.title));
        job.insert("runs-on".into(), json!(["self-hosted", "illumos"]));
        if !j.needs.is_empty() {
            job.insert("needs".into(), json!(j.needs));
        }
        if j.kind == Kind::Report {
            // The report is wanted most when something failed.
            job.insert("if".into(), json!("${{ always() }}"));
        }
        job.insert("env".into(), Value::Object(env.clone()));
        let mut steps = vec![
            json!({ "uses": "actions/checkout@v4" }),
            json!({ "name": j.title, "run": j.script.join("\n") }),
        ];
        if j.kind != Kind::Build {
            let dir = match j.kind {
                Kind::Test => format!("{}/{}", o.report_dir, j.id),
                _ => o.report_dir.clone(),
            };
            steps.push(json!({
                "if": "${{ always() }}",
                "uses": "actions/upload-artifact@v4",
                "with": { "name": j.id, "path": dir },
            }));
        }
        job.insert("steps".into(), Value::Array(steps));
        out.insert(j.id.clone(), Value::Object(job));
    }
    json!({
        "name": "image-builder matrix",
        "on": { "workflow_dispatch": {} },
        "jobs": out,
    })
}

fn gitlab(jobs: &[PipelineJob], o: &EmitOptions) -> Value {
    let mut doc = Map::new();
    doc.insert("stages".into(), json!(["build", "test", "report"]));
    for j in jobs {
        let stage = match j.kind {
            Kind::Build => "build",
            Kind::Test => "test",
            Kind::Report => "report",
        };
        let mut job = Map::new();
        job.insert("stage".into(), json!(stage));
        job.insert("tags".into(), json!(["illumos"]));
        // An explicit DAG: a job starts when what it needs is done, not at its stage.
        job.insert("needs".into(), json!(j.needs));
        job.insert("script".into(), json!(j.script));
        match j.kind {
            Kind::Build => {}
            Kind::Test => {
                job.insert(
                    "artifacts".into(),
                    json!({ "when": "always", "paths": [format!("{}/{}", o.report_dir, j.id)] }),
                );
            }
            Kind::Report => {
                job.insert("when".into(), json!("always"));
                job.insert(
                    "artifacts".into(),
                    json!({ "when": "always", "paths": [o.report_dir] }),
                );
            }
        }
        doc.insert(j.id.clone(), Value::Object(job));
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(sh("rpool/images"), "rpool/images");
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), r"'it'\''s'");
        assert_eq!(sh(""), "''");
    }
}
