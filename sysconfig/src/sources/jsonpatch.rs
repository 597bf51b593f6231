//! `#cloud-config-jsonp`: a JSON patch (RFC 6902) applied to the cloud-config merged so
//! far, as cloud-init's `CloudConfigPartHandler._merge_patch` does with the `jsonpatch`
//! module: `add`, `remove`, `replace`, `move`, `copy` and `test`, with JSON pointers
//! (RFC 6901). A patch that does not apply leaves the configuration as it was.

use serde_json::Value;

use crate::yaml::Node;

fn from_json(v: &Value) -> Node {
    match v {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Node::Int(i.into()),
            None => n
                .as_u64()
                .map(|u| Node::Int(u.into()))
                .unwrap_or_else(|| Node::Float(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => Node::Str(s.clone()),
        Value::Array(a) => Node::Seq(a.iter().map(from_json).collect()),
        Value::Object(m) => Node::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

fn pointer(p: &str) -> Result<Vec<String>, String> {
    if p.is_empty() {
        return Ok(vec![]);
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| format!("pointer {p:?} does not start with /"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn get<'a>(doc: &'a Node, path: &[String]) -> Option<&'a Node> {
    let mut cur = doc;
    for t in path {
        cur = match cur {
            Node::Map(m) => m.iter().find(|(k, _)| k == t).map(|(_, v)| v)?,
            Node::Seq(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn parent_mut<'a>(doc: &'a mut Node, path: &[String]) -> Result<&'a mut Node, String> {
    let mut cur = doc;
    for t in path {
        cur = match cur {
            Node::Map(m) => m
                .iter_mut()
                .find(|(k, _)| k == t)
                .map(|(_, v)| v)
                .ok_or_else(|| format!("no member {t:?}"))?,
            Node::Seq(a) => t
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .ok_or_else(|| format!("no item {t:?}"))?,
            _ => return Err(format!("{t:?} is inside a scalar")),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Node, path: &[String], value: Node) -> Result<(), String> {
    let Some((last, parent)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parent)? {
        Node::Map(m) => {
            match m.iter_mut().find(|(k, _)| k == last) {
                Some((_, v)) => *v = value,
                None => m.push((last.clone(), value)),
            }
            Ok(())
        }
        Node::Seq(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("{last:?} is not an index"))?
            };
            if i > a.len() {
                return Err(format!("index {i} is out of range"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err("the target's parent is a scalar".into()),
    }
}

fn remove(doc: &mut Node, path: &[String]) -> Result<Node, String> {
    let (last, parent) = path
        .split_last()
        .ok_or("cannot remove the whole document")?;
    match parent_mut(doc, parent)? {
        Node::Map(m) => {
            let i = m
                .iter()
                .position(|(k, _)| k == last)
                .ok_or_else(|| format!("no member {last:?}"))?;
            Ok(m.remove(i).1)
        }
        Node::Seq(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(|| format!("no item {last:?}"))?;
            Ok(a.remove(i))
        }
        _ => Err("the target's parent is a scalar".into()),
    }
}

/// Applies `patch` (JSON text) to `doc`; on an error `doc` is unchanged.
pub fn apply(doc: &mut Node, patch: &str) -> Result<(), String> {
    let ops: Value = serde_json::from_str(patch).map_err(|e| format!("not JSON: {e}"))?;
    let ops = ops
        .as_array()
        .ok_or("a JSON patch is a list of operations")?;
    let mut work = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let bad = |m: String| format!("operation {i}: {m}");
        let name = op["op"].as_str().ok_or_else(|| bad("no op".into()))?;
        let path =
            pointer(op["path"].as_str().ok_or_else(|| bad("no path".into()))?).map_err(bad)?;
        let value = || {
            op.get("value")
                .map(from_json)
                .ok_or_else(|| bad("no value".into()))
        };
        let from = || {
            op["from"]
                .as_str()
                .ok_or_else(|| bad("no from".into()))
                .and_then(|f| pointer(f).map_err(bad))
        };
        match name {
            "add" => add(&mut work, &path, value()?).map_err(bad)?,
            "remove" => {
                remove(&mut work, &path).map_err(bad)?;
            }
            "replace" => {
                remove(&mut work, &path).map_err(bad)?;
                add(&mut work, &path, value()?).map_err(bad)?;
            }
            "move" => {
                let v = remove(&mut work, &from()?).map_err(bad)?;
                add(&mut work, &path, v).map_err(bad)?;
            }
            "copy" => {
                let v = get(&work, &from()?)
                    .cloned()
                    .ok_or_else(|| bad("from does not exist".into()))?;
                add(&mut work, &path, v).map_err(bad)?;
            }
            "test" => {
                if get(&work, &path) != Some(&value()?) {
                    return Err(bad("test failed".into()));
                }
            }
            other => return Err(bad(format!("unknown op {other:?}"))),
        }
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations() {
        let mut d = Node::Map(vec![(
            "users".into(),
            Node::Seq(vec![Node::Str("a".into())]),
        )]);
        apply(
            &mut d,
            r#"[{"op":"add","path":"/users/-","value":"b"},{"op":"add","path":"/hostname","value":"h"},
               {"op":"copy","from":"/hostname","path":"/fqdn"},{"op":"test","path":"/users/1","value":"b"},
               {"op":"remove","path":"/users/0"},{"op":"replace","path":"/fqdn","value":"h.x"}]"#,
        )
        .unwrap();
        assert_eq!(
            d.get("users"),
            Some(&Node::Seq(vec![Node::Str("b".into())]))
        );
        assert_eq!(d.get("fqdn"), Some(&Node::Str("h.x".into())));
        let before = d.clone();
        assert!(apply(
            &mut d,
            r#"[{"op":"add","path":"/x","value":1},{"op":"remove","path":"/nope"}]"#
        )
        .is_err());
        assert_eq!(d, before);
    }
}
