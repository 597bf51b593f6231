//! The YAML syntax layer against the yaml-test-suite (https://github.com/yaml/yaml-test-suite,
//! its `data` branch checked out anywhere): `YAML_TEST_SUITE=DIR cargo test -p sysconfig
//! --test yaml_test_suite -- --nocapture` runs every case through `saphyr-parser`, the
//! parser `sysconfig::yaml` uses, and compares its events with the case's `test.event`
//! (anchor names, which the parser numbers, are compared by position) or, for a case with
//! an `error` file, expects a failure. Without the variable the test says `skipped`.

use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser, ScalarStyle};

fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.join("in.yaml").is_file() {
            out.push(p.clone());
        }
        // `name/` and `tags/` hold the same cases again, as links.
        let alias = p.file_name().is_some_and(|n| n == "name" || n == "tags");
        if p.is_dir() && !alias {
            cases(&p, out);
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r")
        .replace('\u{8}', "\\b")
}

fn events(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let tag = |t: &Option<std::borrow::Cow<'_, saphyr_parser::Tag>>| {
        t.as_ref()
            .map(|t| format!(" <{}{}>", t.handle, t.suffix))
            .unwrap_or_default()
    };
    let anchor = |a: usize| {
        if a > 0 {
            format!(" &{a}")
        } else {
            String::new()
        }
    };
    for ev in Parser::new_from_str(text) {
        let (ev, _) = ev.map_err(|e| e.info().to_string())?;
        out.push(match ev {
            Event::StreamStart => "+STR".into(),
            Event::StreamEnd => "-STR".into(),
            Event::DocumentStart(explicit) => if explicit { "+DOC ---" } else { "+DOC" }.into(),
            Event::DocumentEnd => "-DOC".into(),
            Event::Alias(a) => format!("=ALI *{a}"),
            Event::SequenceStart(a, t) => format!("+SEQ{}{}", anchor(a), tag(&t)),
            Event::SequenceEnd => "-SEQ".into(),
            Event::MappingStart(a, t) => format!("+MAP{}{}", anchor(a), tag(&t)),
            Event::MappingEnd => "-MAP".into(),
            Event::Scalar(v, style, a, t) => {
                let c = match style {
                    ScalarStyle::Plain => ':',
                    ScalarStyle::SingleQuoted => '\'',
                    ScalarStyle::DoubleQuoted => '"',
                    ScalarStyle::Literal => '|',
                    ScalarStyle::Folded => '>',
                };
                format!("=VAL{}{} {c}{}", anchor(a), tag(&t), escape(&v))
            }
            Event::Nothing => continue,
        });
    }
    Ok(out)
}

/// The suite's events with anchor names replaced by their order of appearance, flow
/// collection markers (`[]`, `{}`) and explicit document ends (`...`) dropped: the parser
/// reports neither.
fn expected(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    text.lines()
        .map(|l| {
            let l = l.replace("+SEQ []", "+SEQ").replace("+MAP {}", "+MAP");
            let l = if l == "-DOC ..." {
                "-DOC".to_string()
            } else {
                l
            };
            l.split(' ')
                .enumerate()
                .map(|(i, w)| {
                    if i > 0 && (w.starts_with('&') || w.starts_with('*')) && !l.starts_with("=VAL")
                        || (i == 1 && l.starts_with("=VAL") && w.starts_with('&'))
                        || (l.starts_with("=ALI") && i == 1)
                    {
                        let name = &w[1..];
                        let n = match names.iter().rposition(|x| x == name) {
                            Some(p) if w.starts_with('*') => p + 1,
                            _ => {
                                names.push(name.to_string());
                                names.len()
                            }
                        };
                        format!("{}{n}", &w[..1])
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn yaml_test_suite() {
    let Some(dir) = std::env::var_os("YAML_TEST_SUITE") else {
        println!("skipped: YAML_TEST_SUITE is not set (a checkout of the suite's data branch)");
        return;
    };
    let mut all = Vec::new();
    cases(Path::new(&dir), &mut all);
    all.sort();
    assert!(!all.is_empty(), "no cases under {}", dir.to_string_lossy());
    let (mut pass, mut fail) = (0, Vec::new());
    for c in &all {
        let text = std::fs::read_to_string(c.join("in.yaml")).unwrap_or_default();
        let want_error = c.join("error").exists();
        let got = events(&text);
        let ok = match (&got, want_error) {
            (Err(_), true) => true,
            (Ok(_), true) | (Err(_), false) => false,
            (Ok(ev), false) => {
                let want =
                    expected(&std::fs::read_to_string(c.join("test.event")).unwrap_or_default());
                *ev == want
            }
        };
        if ok {
            pass += 1;
        } else {
            fail.push(c.strip_prefix(&dir).unwrap_or(c).display().to_string());
        }
    }
    println!(
        "yaml-test-suite: {pass} of {} cases pass; differing: {}",
        all.len(),
        fail.join(" ")
    );
    assert!(
        fail.len() * 50 <= all.len(),
        "more than 2% of the suite fails"
    );
}
