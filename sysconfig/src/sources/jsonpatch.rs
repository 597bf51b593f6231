//! `#cloud-config-jsonp`: a JSON patch (RFC 6902) applied to the cloud-config merged so
//! far, as cloud-init's `CloudConfigPartHandler._merge_patch` does with the `jsonpatch`
//! module: `add`, `remove`, `replace`, `move`, `copy` and `test`, with JSON pointers
//! (RFC 6901). A patch that does not apply leaves the configuration as it was.

use serde_json::Value;

use crate::yaml::Node;

/// Why a patch does not apply.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("a JSON patch is a list of operations")]
    NotAList,
    #[error("operation {index}: {problem}")]
    Op { index: usize, problem: OpProblem },
}

/// What is wrong with one operation of a patch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpProblem {
    /// A member the operation needs (`op`, `path`, `value`, `from`).
    #[error("no {0}")]
    Missing(&'static str),
    #[error("pointer {0:?} does not start with /")]
    Pointer(String),
    #[error("no member {0:?}")]
    NoMember(String),
    #[error("no item {0:?}")]
    NoItem(String),
    #[error("{0:?} is inside a scalar")]
    InsideScalar(String),
    #[error("{0:?} is not an index")]
    NotIndex(String),
    #[error("index {0} is out of range")]
    OutOfRange(usize),
    #[error("the target's parent is a scalar")]
    ParentIsScalar,
    #[error("cannot remove the whole document")]
    WholeDocument,
    #[error("from does not exist")]
    FromMissing,
    #[error("test failed")]
    TestFailed,
    #[error("unknown op {0:?}")]
    UnknownOp(String),
}

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

fn pointer(p: &str) -> Result<Vec<String>, OpProblem> {
    if p.is_empty() {
        return Ok(vec![]);
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| OpProblem::Pointer(p.into()))?;
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

fn parent_mut<'a>(doc: &'a mut Node, path: &[String]) -> Result<&'a mut Node, OpProblem> {
    let mut cur = doc;
    for t in path {
        cur = match cur {
            Node::Map(m) => m
                .iter_mut()
                .find(|(k, _)| k == t)
                .map(|(_, v)| v)
                .ok_or_else(|| OpProblem::NoMember(t.clone()))?,
            Node::Seq(a) => t
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .ok_or_else(|| OpProblem::NoItem(t.clone()))?,
            _ => return Err(OpProblem::InsideScalar(t.clone())),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Node, path: &[String], value: Node) -> Result<(), OpProblem> {
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
                    .map_err(|_| OpProblem::NotIndex(last.clone()))?
            };
            if i > a.len() {
                return Err(OpProblem::OutOfRange(i));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(OpProblem::ParentIsScalar),
    }
}

fn remove(doc: &mut Node, path: &[String]) -> Result<Node, OpProblem> {
    let (last, parent) = path.split_last().ok_or(OpProblem::WholeDocument)?;
    match parent_mut(doc, parent)? {
        Node::Map(m) => {
            let i = m
                .iter()
                .position(|(k, _)| k == last)
                .ok_or_else(|| OpProblem::NoMember(last.clone()))?;
            Ok(m.remove(i).1)
        }
        Node::Seq(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(|| OpProblem::NoItem(last.clone()))?;
            Ok(a.remove(i))
        }
        _ => Err(OpProblem::ParentIsScalar),
    }
}

/// Applies `patch` (JSON text) to `doc`; on an error `doc` is unchanged.
pub fn apply(doc: &mut Node, patch: &str) -> Result<(), PatchError> {
    let ops: Value = serde_json::from_str(patch).map_err(PatchError::NotJson)?;
    let ops = ops.as_array().ok_or(PatchError::NotAList)?;
    let mut work = doc.clone();
    for (index, op) in ops.iter().enumerate() {
        one(&mut work, op).map_err(|problem| PatchError::Op { index, problem })?;
    }
    *doc = work;
    Ok(())
}

/// Applies one operation.
fn one(work: &mut Node, op: &Value) -> Result<(), OpProblem> {
    let name = op["op"].as_str().ok_or(OpProblem::Missing("op"))?;
    let path = pointer(op["path"].as_str().ok_or(OpProblem::Missing("path"))?)?;
    let value = || {
        op.get("value")
            .map(from_json)
            .ok_or(OpProblem::Missing("value"))
    };
    let from = || {
        op["from"]
            .as_str()
            .ok_or(OpProblem::Missing("from"))
            .and_then(pointer)
    };
    match name {
        "add" => add(work, &path, value()?)?,
        "remove" => {
            remove(work, &path)?;
        }
        "replace" => {
            remove(work, &path)?;
            add(work, &path, value()?)?;
        }
        "move" => {
            let v = remove(work, &from()?)?;
            add(work, &path, v)?;
        }
        "copy" => {
            let v = get(work, &from()?).cloned().ok_or(OpProblem::FromMissing)?;
            add(work, &path, v)?;
        }
        "test" => {
            if get(work, &path) != Some(&value()?) {
                return Err(OpProblem::TestFailed);
            }
        }
        other => return Err(OpProblem::UnknownOp(other.into())),
    }
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
        let e = apply(
            &mut d,
            r#"[{"op":"add","path":"/x","value":1},{"op":"remove","path":"/nope"}]"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "operation 1: no member \"nope\"");
        assert!(matches!(
            e,
            PatchError::Op { index: 1, problem: OpProblem::NoMember(ref m) } if m == "nope"
        ));
        assert_eq!(d, before);
    }
}
