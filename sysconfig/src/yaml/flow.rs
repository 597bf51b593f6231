//! Flow collections: `[a, b]` and `{k: v}`, possibly nested.

use serde_json::{Map, Value};

use super::scalar::{double_quoted, plain, single_quoted};
use super::MAX_DEPTH;

pub(super) struct Flow<'a> {
    pub(super) s: &'a [u8],
    pub(super) i: usize,
}

impl Flow<'_> {
    pub(super) fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn rest(&self) -> &str {
        std::str::from_utf8(&self.s[self.i..]).unwrap_or("")
    }

    pub(super) fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        self.ws();
        match self.s.get(self.i) {
            Some(b'[') => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(out));
                    }
                    out.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {}
                        _ => return Err("expected `,` or `]` in a flow sequence".into()),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut out = Map::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(out));
                    }
                    let k = match self.scalar_until(true)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    self.ws();
                    let v = if self.s.get(self.i) == Some(&b':') {
                        self.i += 1;
                        self.value(depth + 1)?
                    } else {
                        Value::Null
                    };
                    out.insert(k, v);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err("expected `,` or `}` in a flow mapping".into()),
                    }
                }
            }
            Some(_) => self.scalar_until(false),
            None => Err("unexpected end of a flow collection".into()),
        }
    }

    fn scalar_until(&mut self, key: bool) -> Result<Value, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'"') => {
                let rest = self.rest()[1..].to_string();
                let (v, after) = double_quoted(&rest)?;
                self.i = self.s.len() - after.len();
                Ok(Value::String(v))
            }
            Some(b'\'') => {
                let rest = self.rest()[1..].to_string();
                let (v, after) = single_quoted(&rest)?;
                self.i = self.s.len() - after.len();
                Ok(Value::String(v))
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() {
                    let c = self.s[self.i];
                    let colon_end = c == b':'
                        && (self.i + 1 == self.s.len()
                            || matches!(self.s[self.i + 1], b' ' | b',' | b'}' | b']'));
                    if c == b',' || c == b']' || c == b'}' || (key && colon_end) {
                        break;
                    }
                    if c == b'[' || c == b'{' {
                        return Err("unexpected bracket in a plain scalar".into());
                    }
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i])
                    .map_err(|_| "invalid UTF-8".to_string())?;
                Ok(plain(text.trim()))
            }
        }
    }
}
