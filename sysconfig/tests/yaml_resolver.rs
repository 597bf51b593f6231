//! The YAML 1.1 scalar resolver against PyYAML itself: a generated list of plain
//! scalars (numbers in every base and shape, booleans, nulls, dates, and random strings
//! of the characters that decide between them) is loaded by `sysconfig::yaml` and by
//! `yaml.safe_load`; the type and value must agree for every one.

use std::io::Write;
use std::process::{Command, Stdio};

use sysconfig::yaml::{load, Node};

fn python_with_yaml() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import yaml"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn scalars() -> Vec<String> {
    let mut out: Vec<String> = [
        "0",
        "00",
        "07",
        "08",
        "0_7",
        "0644",
        "0o644",
        "0O17",
        "0b101",
        "0b12",
        "0x1F",
        "0xg",
        "0X1F",
        "1_000",
        "_1",
        "1_",
        "12",
        "1:30",
        "1:60",
        "1:5",
        "1:05:30",
        "190:20:30",
        "190:20:30.15",
        "1:30.5",
        "1.5",
        "1.",
        "1.e+3",
        ".5",
        "._5",
        "1e5",
        "1E+5",
        "1.5e+3",
        "1.5E-3",
        "1.5e3",
        "1_0.5_",
        ".inf",
        "-.inf",
        "+.Inf",
        ".INF",
        ".NaN",
        ".nan",
        ".NAN",
        "-.nan",
        "yes",
        "Yes",
        "YES",
        "yEs",
        "y",
        "Y",
        "n",
        "N",
        "no",
        "No",
        "NO",
        "on",
        "On",
        "ON",
        "oN",
        "off",
        "Off",
        "OFF",
        "true",
        "True",
        "TRUE",
        "tRUE",
        "false",
        "False",
        "FALSE",
        "~",
        "null",
        "Null",
        "NULL",
        "nULL",
        "2001-12-14",
        "2001-1-14",
        "2001-12-14t21:59:43.10-05:00",
        "2001-12-14 21:59:43.10 -5",
        "2001-12-14T21:59:43Z",
        "2001-12-14 21:59:43.10",
        "52:54:00:12:34:56",
        "fa:16:3e:00:00:01",
        "10.0.0.1",
        "10.0.0.1/24",
        "1.2.3",
        "::1",
        "fe80::1",
        "1-2",
        "+",
        "+1",
        "-1",
        "-0",
        "+0",
        "-0x1A",
        "-0b1",
        "-017",
        "9223372036854775808",
        "0x7fffffffffffffffff",
        "Europe/Zurich",
        "ssh-ed25519",
        "<<",
        "=",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Random strings over the characters that decide between int, float and str.
    let alphabet = b"0123456789_:.-+xbeEoOnNaIf";
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    while out.len() < 4000 {
        let len = 1 + (next() % 7) as usize;
        let s: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
            .collect();
        out.push(s);
    }
    // Shapes that are not one plain scalar in a block sequence item.
    out.retain(|s| {
        !s.ends_with(':')
            && !s.contains(": ")
            && !(s.starts_with('-') && (s.len() == 1 || s.as_bytes()[1] == b' '))
    });
    out.sort();
    out.dedup();
    out
}

fn ours(s: &str) -> (String, Option<String>) {
    let node = match load(&format!("- {s}\n")) {
        Ok(Node::Seq(mut v)) if v.len() == 1 => v.remove(0),
        Ok(other) => return ("other".into(), Some(format!("{other:?}"))),
        Err(_) => return ("error".into(), None),
    };
    match node {
        Node::Null => ("null".into(), None),
        Node::Bool(b) => ("bool".into(), Some(b.to_string())),
        Node::Int(i) => ("int".into(), Some(i.to_string())),
        Node::Float(f) if f.is_nan() => ("float".into(), Some("nan".into())),
        Node::Float(f) if f.is_infinite() => (
            "float".into(),
            Some(if f > 0.0 { "inf" } else { "-inf" }.into()),
        ),
        Node::Float(f) => ("float".into(), Some(format!("{f:?}"))),
        Node::Timestamp(_) => ("timestamp".into(), None),
        Node::Str(s) => ("str".into(), Some(s)),
        other => ("other".into(), Some(format!("{other:?}"))),
    }
}

/// Python's `repr(float)` and Rust's `{:?}` agree on the shortest round-trip digits but
/// not on exponent notation; compare the numbers themselves.
fn same_float(a: &str, b: &str) -> bool {
    a == b || a.parse::<f64>().ok() == b.parse::<f64>().ok() && a.parse::<f64>().is_ok()
}

#[test]
fn plain_scalars_resolve_as_pyyaml_does() {
    let Some(py) = python_with_yaml() else {
        println!("skipped: no python3 with PyYAML (scripts/test installs python3-yaml)");
        return;
    };
    let list = scalars();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/pyyaml_scalars.py"
    );
    let mut child = Command::new(py)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&list).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let theirs: Vec<(String, Option<serde_json::Value>)> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), list.len());
    let mut wrong = Vec::new();
    for (s, (t, v)) in list.iter().zip(&theirs) {
        let v = v.as_ref().map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let (ot, ov) = ours(s);
        let same = ot == *t
            && match (t.as_str(), &ov, &v) {
                ("float", Some(a), Some(b)) => same_float(a, b),
                _ => ov == v,
            };
        if !same {
            wrong.push(format!("{s:?}: PyYAML {t} {v:?}, sysconfig {ot} {ov:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} scalars differ:\n{}",
        wrong.len(),
        list.len(),
        wrong.join("\n")
    );
    println!("{} scalars resolve as PyYAML does", list.len());
}
