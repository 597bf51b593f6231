//! The YAML subset cloud metadata uses, read into JSON values: block mappings and
//! sequences (including `- key: value` items), flow `[...]` and `{...}`, plain, single-
//! and double-quoted scalars, `|` and `>` block scalars, comments and `---`.
//!
//! Scalars resolve as in YAML 1.2's core schema, with two deliberate choices: numbers
//! with a leading zero (`0644`) stay strings, since they are file modes in cloud-config,
//! and colon-separated digits (`52:54:00:12:34:56`, a MAC address) are strings, never
//! YAML 1.1 base-60 integers. Anchors, aliases, tags and multi-document streams are
//! rejected with an error rather than misread.

mod flow;
mod scalar;

use serde_json::{Map, Value};

use flow::Flow;
use scalar::scalar;

pub(crate) const MAX_DEPTH: usize = 64;

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut lines: Vec<String> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.strip_suffix('\r').unwrap_or(l);
        if i == 0 && l.starts_with("%YAML") {
            continue;
        }
        lines.push(l.to_string());
    }
    let mut p = Parser { lines, pos: 0 };
    p.skip_blank();
    if p.pos < p.lines.len() && p.lines[p.pos].trim_end() == "---" {
        p.pos += 1;
    }
    p.skip_blank();
    if p.pos >= p.lines.len() {
        return Ok(Value::Null);
    }
    let ind = indent(&p.lines[p.pos]);
    let v = p.block(ind, 0)?;
    p.skip_blank();
    if p.pos < p.lines.len() {
        let l = p.lines[p.pos].trim();
        if l == "---" {
            return Err(format!(
                "line {}: only one document is supported",
                p.pos + 1
            ));
        }
        if l != "..." {
            return Err(format!(
                "line {}: unexpected indentation or content",
                p.pos + 1
            ));
        }
    }
    Ok(v)
}

struct Parser {
    lines: Vec<String>,
    pos: usize,
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

fn is_blank(l: &str) -> bool {
    let t = l.trim();
    t.is_empty() || t.starts_with('#')
}

/// The line without a trailing comment (a `#` after whitespace, outside quotes).
fn strip_comment(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut sq, mut dq) = (false, false);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if dq => i += 1,
            b'\'' if !dq => sq = !sq,
            b'"' if !sq => dq = !dq,
            b'#' if !sq && !dq && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') => {
                return s[..i].trim_end()
            }
            _ => {}
        }
        i += 1;
    }
    s.trim_end()
}

/// Splits `key: rest` at the first `: ` (or final `:`) outside quotes and brackets.
fn split_key(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let (mut sq, mut dq, mut depth) = (false, false, 0i32);
    if matches!(b.first(), Some(b'[') | Some(b'{')) {
        return None;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if dq => i += 1,
            b'\'' if !dq => sq = !sq,
            b'"' if !sq => dq = !dq,
            b'[' | b'{' if !sq && !dq => depth += 1,
            b']' | b'}' if !sq && !dq => depth -= 1,
            b':' if !sq && !dq && depth == 0 && (i + 1 == b.len() || b[i + 1] == b' ') => {
                return Some((s[..i].trim_end(), s[i + 1..].trim_start()));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

impl Parser {
    fn skip_blank(&mut self) {
        while self.pos < self.lines.len() && is_blank(&self.lines[self.pos]) {
            self.pos += 1;
        }
    }

    fn err(&self, m: impl std::fmt::Display) -> String {
        format!("line {}: {m}", self.pos + 1)
    }

    fn block(&mut self, ind: usize, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.skip_blank();
        let Some(line) = self.lines.get(self.pos) else {
            return Ok(Value::Null);
        };
        if line[..indent(line)].contains('\t') || line.trim_start().starts_with('\t') {
            return Err(self.err("tabs cannot indent YAML"));
        }
        let content = strip_comment(&line[ind.min(line.len())..]).to_string();
        if content == "-" || content.starts_with("- ") {
            self.seq(ind, depth)
        } else if split_key(&content).is_some() {
            self.map(ind, depth)
        } else {
            self.pos += 1;
            self.inline(&content, ind, depth)
        }
    }

    fn seq(&mut self, ind: usize, depth: usize) -> Result<Value, String> {
        let mut out = Vec::new();
        loop {
            self.skip_blank();
            let Some(line) = self.lines.get(self.pos) else {
                break;
            };
            if indent(line) != ind {
                if indent(line) > ind {
                    return Err(self.err("bad indentation in a sequence"));
                }
                break;
            }
            let content = strip_comment(&line[ind..]).to_string();
            if !(content == "-" || content.starts_with("- ")) {
                break;
            }
            let rest = content[1..].trim_start();
            if rest.is_empty() {
                self.pos += 1;
                self.skip_blank();
                match self.lines.get(self.pos) {
                    Some(l) if indent(l) > ind => {
                        let i = indent(l);
                        out.push(self.block(i, depth + 1)?);
                    }
                    _ => out.push(Value::Null),
                }
                continue;
            }
            let offset = content.len() - rest.len();
            if rest == "-" || rest.starts_with("- ") || split_key(rest).is_some() {
                // "- key: v" opens a mapping (or sequence) indented to where "key" starts:
                // blank the dash and read the line again at that indentation.
                let new_ind = ind + offset;
                let replaced = format!("{}{}", " ".repeat(new_ind), rest);
                self.lines[self.pos] = replaced;
                out.push(self.block(new_ind, depth + 1)?);
            } else {
                self.pos += 1;
                out.push(self.inline(rest, ind, depth)?);
            }
        }
        Ok(Value::Array(out))
    }

    fn map(&mut self, ind: usize, depth: usize) -> Result<Value, String> {
        let mut out = Map::new();
        loop {
            self.skip_blank();
            let Some(line) = self.lines.get(self.pos) else {
                break;
            };
            if indent(line) != ind {
                if indent(line) > ind {
                    return Err(self.err("bad indentation in a mapping"));
                }
                break;
            }
            let content = strip_comment(&line[ind..]).to_string();
            let Some((k, rest)) = split_key(&content) else {
                if content == "-" || content.starts_with("- ") {
                    return Err(self.err("a sequence item where a mapping key was expected"));
                }
                return Err(self.err("expected `key: value`"));
            };
            let key = match scalar(k).map_err(|e| self.err(e))? {
                Value::String(s) => s,
                Value::Null => "null".into(),
                other => other.to_string(),
            };
            if key.starts_with('?') {
                return Err(self.err("complex mapping keys are not supported"));
            }
            let rest = rest.to_string();
            self.pos += 1;
            let value = if rest.is_empty() {
                self.skip_blank();
                match self.lines.get(self.pos) {
                    Some(l) if indent(l) > ind => {
                        let i = indent(l);
                        self.block(i, depth + 1)?
                    }
                    Some(l)
                        if indent(l) == ind && {
                            let c = strip_comment(&l[ind..]);
                            c == "-" || c.starts_with("- ")
                        } =>
                    {
                        self.seq(ind, depth + 1)?
                    }
                    _ => Value::Null,
                }
            } else {
                self.inline(&rest, ind, depth)?
            };
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    /// A value that starts on the current (already consumed) line: a block scalar
    /// header, a flow collection (which may continue on following lines) or a scalar.
    fn inline(&mut self, s: &str, ind: usize, depth: usize) -> Result<Value, String> {
        // The line holding `s` was consumed already: it is line number `self.pos`.
        let at = self.pos;
        let err = |m: String| format!("line {at}: {m}");
        if s.starts_with('|') || s.starts_with('>') {
            return self.block_scalar(s, ind);
        }
        if s.starts_with('&') || s.starts_with('*') || s.starts_with('!') {
            return Err(err("anchors, aliases and tags are not supported".into()));
        }
        if s.starts_with('[') || s.starts_with('{') {
            let mut text = s.to_string();
            while !balanced(&text) {
                let Some(next) = self.lines.get(self.pos) else {
                    return Err(err("unclosed flow collection".into()));
                };
                text.push(' ');
                text.push_str(strip_comment(next.trim()));
                self.pos += 1;
            }
            let mut f = Flow {
                s: text.as_bytes(),
                i: 0,
            };
            let v = f.value(depth).map_err(err)?;
            f.ws();
            if f.i != f.s.len() {
                return Err(err("text after a flow collection".into()));
            }
            return Ok(v);
        }
        scalar(s).map_err(err)
    }

    fn block_scalar(&mut self, header: &str, ind: usize) -> Result<Value, String> {
        let folded = header.starts_with('>');
        let chomp = if header.contains('-') {
            '-'
        } else if header.contains('+') {
            '+'
        } else {
            ' '
        };
        let mut body: Vec<String> = Vec::new();
        let mut block_ind = None;
        while let Some(l) = self.lines.get(self.pos) {
            if l.trim().is_empty() {
                body.push(String::new());
                self.pos += 1;
                continue;
            }
            let i = indent(l);
            let bi = *block_ind.get_or_insert(i);
            if i <= ind || i < bi {
                break;
            }
            body.push(l[bi..].to_string());
            self.pos += 1;
        }
        let mut trailing = 0;
        while body.last().is_some_and(|l| l.is_empty()) {
            body.pop();
            trailing += 1;
        }
        let mut text = if folded {
            let mut t = String::new();
            for (n, l) in body.iter().enumerate() {
                if n > 0 {
                    if l.is_empty() {
                        t.push('\n');
                    } else if !body[n - 1].is_empty() {
                        t.push(' ');
                    }
                }
                t.push_str(l);
            }
            t
        } else {
            body.join("\n")
        };
        match chomp {
            '-' => {}
            '+' => {
                text.push('\n');
                text.push_str(&"\n".repeat(trailing));
            }
            _ if !body.is_empty() => text.push('\n'),
            _ => {}
        }
        Ok(Value::String(text))
    }
}

fn balanced(s: &str) -> bool {
    let (mut sq, mut dq, mut depth, mut esc) = (false, false, 0i32, false);
    for c in s.chars() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' if dq => esc = true,
            '\'' if !dq => sq = !sq,
            '"' if !sq => dq = !dq,
            '[' | '{' if !sq && !dq => depth += 1,
            ']' | '}' if !sq && !dq => depth -= 1,
            _ => {}
        }
    }
    depth <= 0 && !sq && !dq
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cloud_config_shapes() {
        let v = parse(
            "#cloud-config\n---\nhostname: web1  # comment\nusers:\n  - default\n  - name: ann\n    groups: [staff, 'adm']\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAA ann@x\nwrite_files:\n- path: /etc/motd\n  permissions: 0644\n  content: |\n    hello\n      indented\n\n    # not a comment\n  owner: root:root\nempty:\nflag: true\nn: -12\nf: 2.5\nmac: 52:54:00:12:34:56\nq: \"a\\tb \\u00e9\"\ns: 'it''s'\nm: {a: 1, b: [x, y], c: \"d, e\"}\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "hostname": "web1",
                "users": ["default", {"name":"ann","groups":["staff","adm"],"ssh_authorized_keys":["ssh-ed25519 AAAA ann@x"]}],
                "write_files": [{"path":"/etc/motd","permissions":"0644","content":"hello\n  indented\n\n# not a comment\n","owner":"root:root"}],
                "empty": null, "flag": true, "n": -12, "f": 2.5,
                "mac": "52:54:00:12:34:56", "q": "a\tb é", "s": "it's",
                "m": {"a":1,"b":["x","y"],"c":"d, e"}
            })
        );
    }

    #[test]
    fn folded_and_chomped_block_scalars() {
        let v = parse("a: >-\n  one\n  two\n\n  three\nb: |-\n  x\n").unwrap();
        assert_eq!(v, json!({"a":"one two\nthree","b":"x"}));
    }

    #[test]
    fn nested_sequences_and_multiline_flow() {
        let v = parse("- - a\n  - b\n- [1,\n   2]\n").unwrap();
        assert_eq!(v, json!([["a", "b"], [1, 2]]));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse("a: 1\n  b: 2\n").unwrap_err(),
            "line 2: bad indentation in a mapping"
        );
        assert!(parse("a: [1, 2\n").unwrap_err().contains("unclosed"));
        assert!(parse("a: &x 1\n").unwrap_err().contains("anchors"));
        assert!(parse("a: \"open\n").unwrap_err().starts_with("line 1:"));
        assert_eq!(parse("").unwrap(), Value::Null);
    }
}
