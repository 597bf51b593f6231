//! YAML as cloud-init reads it: the syntax by `saphyr-parser` (a YAML 1.2 parser that
//! passes the yaml-test-suite), the values as PyYAML's `yaml.safe_load` gives them (YAML
//! 1.1 resolution: `yes`/`no`/`on`/`off` are booleans, `0644` is the octal integer 420,
//! `1:30` is 90, `!!binary` is bytes, `<<` merges mappings). See `resolve` for the
//! scalar rules. Like `safe_load`, a stream with more than one document and tags other
//! than the standard ones are refused.

mod resolve;

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

pub use resolve::{bool_of, float_of, int_of, resolve, Kind};

/// Nesting deeper than this is refused (PyYAML would hit Python's recursion limit).
pub(crate) const MAX_DEPTH: usize = 200;
/// Aliases may repeat nodes; a document expanding to more nodes than this is refused.
const MAX_NODES: usize = 1_000_000;

/// A loaded YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    /// `!!binary`.
    Bytes(Vec<u8>),
    /// A YAML 1.1 timestamp, kept as written (PyYAML makes a `datetime` of it).
    Timestamp(String),
    Seq(Vec<Node>),
    /// Keys in document order; a repeated key keeps its last value, as in PyYAML.
    Map(Vec<(String, Node)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} column {column}: {problem}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub problem: Problem,
}

/// What is wrong at a place in a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A syntax error, as the parser words it.
    #[error("{0}")]
    Syntax(String),
    #[error("only one document is allowed (found a second `---`)")]
    SecondDocument,
    #[error("the tag {0} is not supported")]
    Tag(String),
    #[error("the tag !!{tag} is not supported on {on}")]
    TagOn { tag: String, on: &'static str },
    #[error("nested too deeply")]
    TooDeep,
    #[error("unbalanced {0}")]
    Unbalanced(&'static str),
    #[error("an alias refers to an unknown anchor")]
    UnknownAnchor,
    #[error("the document expands to more than {MAX_NODES} values")]
    TooLarge,
    #[error("a merge key (`<<`) needs a mapping or a list of mappings")]
    MergeValue,
    #[error("a list or mapping cannot be a mapping key")]
    CollectionKey,
    #[error("!!binary data is not ASCII base64")]
    BinaryNotAscii,
    #[error("!!binary: {0}")]
    Binary(base64::DecodeError),
    /// A scalar that its tag says is of a type it is not.
    #[error("{text:?} is not {what}")]
    NotA { text: String, what: &'static str },
    #[error("`<<` (a merge key) is only allowed as a mapping key")]
    MergeKeyAsValue,
    #[error("`=` (the YAML 1.1 value key) has no meaning here")]
    ValueKey,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What the value is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Bytes(_) => "binary data",
            Node::Timestamp(_) => "a timestamp",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// The value as JSON, as Python's `json.dumps` would write what PyYAML loaded:
    /// binary data that is UTF-8 becomes a string (other binary data is an error, JSON
    /// has no bytes), a timestamp its text, an integer beyond 64 bits or an infinite
    /// float its decimal text.
    pub fn to_json(&self) -> Result<Value, ParseError> {
        Ok(match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::String(i.to_string())),
            Node::Float(f) => Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string())),
            Node::Str(s) | Node::Timestamp(s) => Value::String(s.clone()),
            Node::Bytes(b) => {
                Value::String(String::from_utf8(b.clone()).map_err(|_| ParseError::BinaryNotText)?)
            }
            Node::Seq(a) => Value::Array(a.iter().map(Node::to_json).collect::<Result<_, _>>()?),
            Node::Map(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    out.insert(k.clone(), v.to_json()?);
                }
                Value::Object(out)
            }
        })
    }

    fn key_text(&self) -> Result<String, Problem> {
        Ok(match self {
            Node::Str(s) | Node::Timestamp(s) => s.clone(),
            Node::Null => "null".into(),
            Node::Bool(b) => b.to_string(),
            Node::Int(i) => i.to_string(),
            Node::Float(f) => f.to_string(),
            Node::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Node::Seq(_) | Node::Map(_) => return Err(Problem::CollectionKey),
        })
    }

    fn size(&self) -> usize {
        match self {
            Node::Seq(a) => 1 + a.iter().map(Node::size).sum::<usize>(),
            Node::Map(m) => 1 + m.iter().map(|(_, v)| 1 + v.size()).sum::<usize>(),
            _ => 1,
        }
    }
}

/// Why a YAML document cannot be read as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// `!!binary` data that JSON cannot hold.
    #[error("binary data that is not UTF-8 text")]
    BinaryNotText,
}

/// Parses one YAML document into JSON (see [`Node::to_json`]). An empty document is null.
pub fn parse(text: &str) -> Result<Value, ParseError> {
    load(text)?.to_json()
}

enum Frame {
    Seq(usize, Vec<Node>),
    /// Anchor, entries, a key waiting for its value, merges (`<<`) seen.
    Map(usize, Vec<(String, Node)>, Option<Node>, Vec<Node>, bool),
}

fn core<'a>(tag: &'a Option<Cow<'_, Tag>>) -> Option<Result<&'a str, Problem>> {
    let t = tag.as_ref()?;
    if t.handle == "tag:yaml.org,2002:" {
        Some(Ok(t.suffix.as_str()))
    } else if t.handle == "!" && t.suffix.is_empty() {
        // The non-specific tag `!`: a string.
        Some(Ok("str"))
    } else {
        Some(Err(Problem::Tag(format!("{}{}", t.handle, t.suffix))))
    }
}

fn scalar(text: &str, style: ScalarStyle, tag: &Option<Cow<'_, Tag>>) -> Result<Node, Problem> {
    let kind = match core(tag) {
        None if style == ScalarStyle::Plain => resolve(text),
        None => Kind::Str,
        Some(t) => match t? {
            "str" => Kind::Str,
            "int" => Kind::Int,
            "float" => Kind::Float,
            "bool" => Kind::Bool,
            "null" => Kind::Null,
            "timestamp" => Kind::Timestamp,
            "binary" => {
                let clean: String = text
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
                    .collect();
                if !text.is_ascii() {
                    return Err(Problem::BinaryNotAscii);
                }
                return base64_std(&clean).map(Node::Bytes).map_err(Problem::Binary);
            }
            other => {
                return Err(Problem::TagOn {
                    tag: other.into(),
                    on: "a scalar",
                })
            }
        },
    };
    let bad = |what: &'static str| Problem::NotA {
        text: text.to_string(),
        what,
    };
    Ok(match kind {
        Kind::Null => Node::Null,
        Kind::Bool => Node::Bool(bool_of(text).ok_or_else(|| bad("a boolean"))?),
        Kind::Int => Node::Int(int_of(text).ok_or_else(|| bad("an integer"))?),
        Kind::Float => Node::Float(float_of(text).ok_or_else(|| bad("a number"))?),
        Kind::Timestamp => Node::Timestamp(text.to_string()),
        Kind::Str => Node::Str(text.to_string()),
        Kind::Merge => return Err(Problem::MergeKeyAsValue),
        Kind::Value => return Err(Problem::ValueKey),
    })
}

/// Standard base64 as Python's `base64.decodebytes` takes it (padding required).
pub fn base64_std(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s)
}

/// Loads a single YAML document, as `yaml.safe_load`.
pub fn load(text: &str) -> Result<Node, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut anchors: std::collections::HashMap<usize, Node> = Default::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut docs = 0;
    let mut result: Option<Node> = None;
    let mut nodes = 0usize;
    let at = |span: &Span, problem: Problem| YamlError {
        line: span.start.line(),
        column: span.start.col() + 1,
        problem,
    };
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            problem: Problem::Syntax(e.info().to_string()),
        })?;
        let (node, anchor, is_merge_key) = match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(at(&span, Problem::SecondDocument));
                }
                continue;
            }
            Event::SequenceStart(a, tag) => {
                match core(&tag) {
                    None | Some(Ok("seq")) => {}
                    Some(Ok(t)) => {
                        return Err(at(
                            &span,
                            Problem::TagOn {
                                tag: t.into(),
                                on: "a list",
                            },
                        ))
                    }
                    Some(Err(e)) => return Err(at(&span, e)),
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(at(&span, Problem::TooDeep));
                }
                stack.push(Frame::Seq(a, Vec::new()));
                continue;
            }
            Event::MappingStart(a, tag) => {
                match core(&tag) {
                    None | Some(Ok("map")) => {}
                    Some(Ok(t)) => {
                        return Err(at(
                            &span,
                            Problem::TagOn {
                                tag: t.into(),
                                on: "a mapping",
                            },
                        ))
                    }
                    Some(Err(e)) => return Err(at(&span, e)),
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(at(&span, Problem::TooDeep));
                }
                stack.push(Frame::Map(a, Vec::new(), None, Vec::new(), false));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(a, items)) => (Node::Seq(items), a, false),
                _ => return Err(at(&span, Problem::Unbalanced("sequence"))),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(a, entries, _, merges, _)) => (merged(entries, merges), a, false),
                _ => return Err(at(&span, Problem::Unbalanced("mapping"))),
            },
            Event::Alias(id) => {
                let n = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| at(&span, Problem::UnknownAnchor))?;
                nodes += n.size();
                (n, 0, false)
            }
            Event::Scalar(text, style, a, tag) => {
                let expecting_key = matches!(stack.last(), Some(Frame::Map(_, _, None, _, _)));
                if expecting_key && style == ScalarStyle::Plain && tag.is_none() && text == "<<" {
                    (Node::Null, a, true)
                } else {
                    (
                        scalar(&text, style, &tag).map_err(|e| at(&span, e))?,
                        a,
                        false,
                    )
                }
            }
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(at(&span, Problem::TooLarge));
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => result = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, key, merges, merge_next)) => {
                if *merge_next {
                    *merge_next = false;
                    *key = None;
                    match node {
                        Node::Map(_) => merges.push(node),
                        Node::Seq(list) if list.iter().all(|n| matches!(n, Node::Map(_))) => {
                            merges.extend(list)
                        }
                        _ => return Err(at(&span, Problem::MergeValue)),
                    }
                } else if let Some(k) = key.take() {
                    let k = k.key_text().map_err(|e| at(&span, e))?;
                    entries.retain(|(e, _)| *e != k);
                    entries.push((k, node));
                } else if is_merge_key {
                    *merge_next = true;
                    *key = Some(Node::Null);
                } else {
                    *key = Some(node);
                }
            }
        }
    }
    Ok(result.unwrap_or(Node::Null))
}

/// PyYAML's `flatten_mapping`: keys of the merged mappings come first, an earlier merged
/// mapping wins over a later one, and the mapping's own keys win over all of them.
fn merged(entries: Vec<(String, Node)>, merges: Vec<Node>) -> Node {
    if merges.is_empty() {
        return Node::Map(entries);
    }
    let mut out: Vec<(String, Node)> = Vec::new();
    for m in merges {
        if let Node::Map(kv) = m {
            for (k, v) in kv {
                if !out.iter().any(|(e, _)| *e == k) {
                    out.push((k, v));
                }
            }
        }
    }
    for (k, v) in entries {
        out.retain(|(e, _)| *e != k);
        out.push((k, v));
    }
    Node::Map(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cloud_config_shapes() {
        let v = parse(
            "#cloud-config\n---\nhostname: web1  # comment\nusers:\n  - default\n  - name: ann\n    groups: [staff, 'adm']\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAA ann@x\nwrite_files:\n- path: /etc/motd\n  permissions: 0644\n  content: |\n    hello\n      indented\n\n    # not a comment\n  owner: root:root\nempty:\nflag: yes\nn: -12\nf: 2.5\nmac: fa:16:3e:00:00:01\nsexa: 52:54:00:12:34:56\nq: \"a\\tb \\u00e9\"\ns: 'it''s'\nm: {a: 1, b: [x, y], c: \"d, e\"}\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "hostname": "web1",
                "users": ["default", {"name":"ann","groups":["staff","adm"],"ssh_authorized_keys":["ssh-ed25519 AAAA ann@x"]}],
                "write_files": [{"path":"/etc/motd","permissions":420,"content":"hello\n  indented\n\n# not a comment\n","owner":"root:root"}],
                "empty": null, "flag": true, "n": -12, "f": 2.5,
                "mac": "fa:16:3e:00:00:01", "sexa": 41135085296_i64, "q": "a\tb é", "s": "it's",
                "m": {"a":1,"b":["x","y"],"c":"d, e"}
            })
        );
    }

    #[test]
    fn folded_plain_and_quoted_scalars_binary_bom_and_merges() {
        let v = parse("\u{feff}key: ssh-rsa AAAA\n  BBBB user@h\nq: \"one\n  two\"\nb: !!binary aGVs\n  bG8=\nbase: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n").unwrap();
        assert_eq!(
            v,
            json!({"key":"ssh-rsa AAAA BBBB user@h","q":"one two","b":"hello","base":{"x":1,"y":2},"d":{"x":1,"y":3}})
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = load("a: 1\n  b: 2\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(parse("a: [1, 2\n").is_err());
        assert_eq!(
            load("a: !custom 1\n").unwrap_err().problem,
            Problem::Tag("!custom".into())
        );
        assert_eq!(load("a: 1\n---\nb: 2\n").unwrap_err().line, 2);
        assert!(load("a: \"open\n").is_err());
        assert_eq!(parse("").unwrap(), Value::Null);
        assert!(load("a: &x [*x]\n").is_err());
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = load(&deep).unwrap_err();
        assert!(
            e.problem == Problem::TooDeep || e.to_string().contains("recursion"),
            "{e}"
        );
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        assert_eq!(load(laughs).unwrap_err().problem, Problem::TooLarge);
    }
}
