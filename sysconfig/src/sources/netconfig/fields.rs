//! Typed getters over a document's mappings: a value of another type is an error that
//! names the field and the type it should have.

use serde_json::{Map, Value};

use super::error::{wrong, wrong_at};
use super::NetError;

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

pub(super) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string, or a number written where a string belongs (`mtu`, `vlan_id`), as text.
pub(super) fn get_str(
    m: &Map<String, Value>,
    k: &str,
    at: &str,
) -> Result<Option<String>, NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ Value::Number(_)) => Ok(Some(v.to_string())),
        Some(v) => Err(wrong(at, k, "a string", v)),
    }
}

pub(super) fn get_map<'a>(
    m: &'a Map<String, Value>,
    k: &str,
    at: &str,
) -> Result<Option<&'a Map<String, Value>>, NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(wrong(at, k, "a mapping", v)),
    }
}

pub(super) fn get_list<'a>(
    m: &'a Map<String, Value>,
    k: &str,
    at: &str,
) -> Result<&'a [Value], NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(wrong(at, k, "a list", v)),
    }
}

/// A boolean as cloud-init reads one (`true`, and the YAML 1.1 words `yes`/`on`).
pub(super) fn get_bool(m: &Map<String, Value>, k: &str, at: &str) -> Result<bool, NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Ok(true),
            "false" | "no" | "off" | "n" => Ok(false),
            _ => Err(wrong_at(
                format!("{at}{k}"),
                "true or false",
                format!("{s:?}"),
            )),
        },
        Some(v) => Err(wrong(at, k, "true or false", v)),
    }
}

/// One string or a list of strings.
pub(super) fn str_list(m: &Map<String, Value>, k: &str, at: &str) -> Result<Vec<String>, NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(String::from).collect()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) => Ok(s.clone()),
                v => Err(wrong(at, &format!("{k}[{i}]"), "a string", v)),
            })
            .collect(),
        Some(v) => Err(wrong(at, k, "a list of strings", v)),
    }
}
