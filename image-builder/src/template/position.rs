//! Where each value of a JSON document starts, by path (`steps[4].mode`), so problems found
//! after parsing can still name a line and column.

use std::collections::HashMap;

/// Line and column (both from 1) of every object member and array element.
#[derive(Debug, Default, Clone)]
pub struct Positions {
    at: HashMap<String, (usize, usize)>,
}

impl Positions {
    /// Indexes `src`, which must be valid JSON (parse it with serde first). Members point
    /// at their key, array elements at their value.
    pub fn index(src: &str) -> Self {
        let mut s = Scanner {
            b: src.as_bytes(),
            i: 0,
            line: 1,
            col: 1,
            out: HashMap::new(),
        };
        s.value("");
        Positions { at: s.out }
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(&pos) = self.at.get(p) {
                return Some(pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    col: usize,
    out: HashMap<String, (usize, usize)>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn bump(&mut self) {
        if let Some(&c) = self.b.get(self.i) {
            self.i += 1;
            if c == b'\n' {
                self.line += 1;
                self.col = 1;
            } else if c & 0xC0 != 0x80 {
                // Count characters, not UTF-8 continuation bytes.
                self.col += 1;
            }
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.bump();
        }
    }

    fn string(&mut self) -> String {
        let start = self.i;
        self.bump();
        while let Some(c) = self.peek() {
            self.bump();
            match c {
                b'\\' => self.bump(),
                b'"' => break,
                _ => {}
            }
        }
        let raw = std::str::from_utf8(&self.b[start..self.i]).unwrap_or("\"\"");
        serde_json::from_str(raw).unwrap_or_default()
    }

    fn value(&mut self, path: &str) {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.bump();
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'"') => {
                            let pos = (self.line, self.col);
                            let key = self.string();
                            let child = if path.is_empty() {
                                key
                            } else {
                                format!("{path}.{key}")
                            };
                            self.out.insert(child.clone(), pos);
                            self.ws();
                            if self.peek() == Some(b':') {
                                self.bump();
                            }
                            self.value(&child);
                        }
                        Some(b',') => self.bump(),
                        Some(b'}') => {
                            self.bump();
                            return;
                        }
                        _ => return,
                    }
                }
            }
            Some(b'[') => {
                self.bump();
                let mut n = 0;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b']') => {
                            self.bump();
                            return;
                        }
                        Some(b',') => self.bump(),
                        Some(_) => {
                            let child = format!("{path}[{n}]");
                            self.out.insert(child.clone(), (self.line, self.col));
                            self.value(&child);
                            n += 1;
                        }
                        None => return,
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while matches!(self.peek(), Some(c) if !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                {
                    self.bump();
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_elements_have_positions() {
        let src = "{\n  \"dataset\": {\"name\": \"x\"},\n  \"steps\": [\n    { \"t\": \"a\" },\n    {\n      \"t\": \"b\", \"mode\": \"6\\\"4x\"\n    }\n  ]\n}\n";
        let p = Positions::index(src);
        assert_eq!(p.find("dataset"), Some((2, 3)));
        assert_eq!(p.find("dataset.name"), Some((2, 15)));
        assert_eq!(p.find("steps[0]"), Some((4, 5)));
        assert_eq!(p.find("steps[1].t"), Some((6, 7)));
        assert_eq!(p.find("steps[1].mode"), Some((6, 17)));
        // A path without its own position falls back to the nearest ancestor.
        assert_eq!(p.find("steps[1].nosuch"), Some((5, 5)));
        assert_eq!(p.find("nothing"), None);
    }

    #[test]
    fn columns_count_characters() {
        let p = Positions::index("{\"é\": 1, \"b\": 2}");
        assert_eq!(p.find("b"), Some((1, 10)));
    }
}
