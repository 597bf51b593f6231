//! TOML documents as JSON values, so one serde model (with `deny_unknown_fields`)
//! checks TOML and JSON alike.

use serde_json::{Map, Number, Value};
use toml_edit::{Item, Table};

/// Parses TOML text into a JSON object. The error names the line, the column and, when
/// the line is `KEY = ...`, the key, but never shows the text: the file may hold a
/// password hash (toml_edit's own message quotes the offending line).
pub fn parse(text: &str) -> Result<Value, TomlSyntaxError> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| syntax_error(text, &e))?;
    Ok(table(doc.as_table()))
}

/// Where a TOML document stops parsing, and why (without the line's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} column {column}{}: TOML syntax error: {what}", key_suffix(.key))]
pub struct TomlSyntaxError {
    pub line: usize,
    pub column: usize,
    /// The key of that line, when it has the form `KEY = ...`.
    pub key: Option<String>,
    pub what: String,
}

fn key_suffix(key: &Option<String>) -> String {
    key.as_ref()
        .map(|k| format!(" (key {k})"))
        .unwrap_or_default()
}

fn syntax_error(text: &str, e: &toml_edit::TomlError) -> TomlSyntaxError {
    let at = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..at].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | ' '))
        });
    let what = e.message().lines().next().unwrap_or("").trim();
    let what = if what.is_empty() {
        "syntax error"
    } else {
        what
    };
    TomlSyntaxError {
        line,
        column,
        key: key.map(String::from),
        what: what.to_string(),
    }
}

fn table(t: &Table) -> Value {
    let mut m = Map::new();
    for (k, item) in t.iter() {
        if let Some(v) = item_value(item) {
            m.insert(k.to_string(), v);
        }
    }
    Value::Object(m)
}

fn item_value(item: &Item) -> Option<Value> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value(v)),
        Item::Table(t) => Some(table(t)),
        Item::ArrayOfTables(a) => Some(Value::Array(a.iter().map(table).collect())),
    }
}

fn value(v: &toml_edit::Value) -> Value {
    use toml_edit::Value as T;
    match v {
        T::String(s) => Value::String(s.value().clone()),
        T::Integer(i) => Value::Number((*i.value()).into()),
        T::Float(f) => Number::from_f64(*f.value()).map_or(Value::Null, Value::Number),
        T::Boolean(b) => Value::Bool(*b.value()),
        T::Datetime(d) => Value::String(d.value().to_string()),
        T::Array(a) => Value::Array(a.iter().map(value).collect()),
        T::InlineTable(t) => {
            let mut m = Map::new();
            for (k, v) in t.iter() {
                m.insert(k.to_string(), value(v));
            }
            Value::Object(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_arrays_and_inline_tables() {
        let v = parse(
            "a = 1\nb = \"x\"\n[t]\nc = [true, 2.5]\nd = { e = \"f\" }\n[[u]]\nname = \"n\"\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a":1,"b":"x","t":{"c":[true,2.5],"d":{"e":"f"}},"u":[{"name":"n"}]})
        );
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let e = parse("a = 1\nb = [\n").unwrap_err();
        assert!(e.line == 2 || e.line == 3, "{e}");
        let e = parse("a = 1\nb = \"x\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (2, Some("b")));
        assert!(e.to_string().starts_with("line 2 column "), "{e}");
        assert!(
            e.to_string().contains(" (key b): TOML syntax error: "),
            "{e}"
        );
    }
}
