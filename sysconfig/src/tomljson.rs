//! TOML documents as JSON values, so one serde model (with `deny_unknown_fields`)
//! checks TOML and JSON alike.

use serde_json::{Map, Number, Value};
use toml_edit::{Item, Table};

/// Parses TOML text into a JSON object; the error carries line and column.
pub fn parse(text: &str) -> Result<Value, String> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string().trim_end().to_string())?;
    Ok(table(doc.as_table()))
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
        assert!(e.contains("line 2") || e.contains("line 3"), "{e}");
    }
}
