//! Feature macros inside template strings.
//!
//! | form            | expands to                                                    |
//! |-----------------|---------------------------------------------------------------|
//! | `${f}`          | the value of `f`; an error if `f` is unset or has many values |
//! | `${f?text}`     | `text` if `f` is set, otherwise nothing                       |
//! | `${f!text}`     | `text` if `f` is not set, otherwise nothing                   |
//! | `${@f}`         | in list fields: one element per value of `f`, none if unset   |
//! | `${@@f}`        | in list fields: one element per value of `f`; `f` must be set |
//! | `$$`            | a literal `$`                                                 |
//!
//! Macros do not nest, and `text` cannot contain `}` or `$`. The list forms mean what they
//! mean in the illumos image-builder: one `@` may expand to nothing, two `@` insist on a value.
//! List values come out in the order the `-F` directives added them.

use super::features::Features;

/// A macro problem: the string, where in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} in {text:?}")]
pub struct ExpandError {
    pub text: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Lit(String),
    Value(String),
    IfSet(String, String),
    IfUnset(String, String),
    Each { name: String, required: bool },
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    text: String,
    chunks: Vec<Chunk>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl Expansion {
    pub fn parse(text: &str) -> Result<Self, ExpandError> {
        let fail = |reason: String| ExpandError {
            text: text.to_string(),
            reason,
        };
        let mut chunks = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            if c != '$' {
                lit.push(c);
                continue;
            }
            match chars.next() {
                Some((_, '$')) => lit.push('$'),
                Some((start, '{')) => {
                    let body_start = start + 1;
                    let mut end = None;
                    for (i, c) in chars.by_ref() {
                        match c {
                            '}' => {
                                end = Some(i);
                                break;
                            }
                            '$' => {
                                return Err(fail(format!(
                                    "macros cannot nest (`$` inside `${{...}}` at byte {i})"
                                )))
                            }
                            _ => {}
                        }
                    }
                    let Some(end) = end else {
                        return Err(fail("unterminated `${`".to_string()));
                    };
                    if !lit.is_empty() {
                        chunks.push(Chunk::Lit(std::mem::take(&mut lit)));
                    }
                    chunks.push(parse_macro(&text[body_start..end]).map_err(fail)?);
                }
                Some((i, other)) => {
                    return Err(fail(format!(
                        "expected `{{` or `$` after `$` at byte {}, found {other:?} (write `$$` for a literal `$`)",
                        i - 1
                    )))
                }
                None => {
                    return Err(fail(
                        "a lone `$` at the end (write `$$` for a literal `$`)".to_string(),
                    ))
                }
            }
        }
        if !lit.is_empty() {
            chunks.push(Chunk::Lit(lit));
        }
        Ok(Expansion {
            text: text.to_string(),
            chunks,
        })
    }

    /// Whether the string contains any macro at all.
    pub fn has_macros(&self) -> bool {
        self.chunks.iter().any(|c| !matches!(c, Chunk::Lit(_)))
    }

    /// Names of every feature the string refers to.
    pub fn features(&self) -> Vec<&str> {
        self.chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Lit(_) => None,
                Chunk::Value(n) | Chunk::IfSet(n, _) | Chunk::IfUnset(n, _) => Some(n.as_str()),
                Chunk::Each { name, .. } => Some(name.as_str()),
            })
            .collect()
    }

    fn fail(&self, reason: String) -> ExpandError {
        ExpandError {
            text: self.text.clone(),
            reason,
        }
    }

    /// Expands to a single string; list macros (`${@f}`) are errors here.
    pub fn one(&self, f: &Features) -> Result<String, ExpandError> {
        let mut out = String::new();
        for c in &self.chunks {
            match c {
                Chunk::Each { name, required } => {
                    let at = if *required { "@@" } else { "@" };
                    return Err(self.fail(format!(
                        "`${{{at}{name}}}` expands to a list and is only allowed in list fields"
                    )));
                }
                _ => self.push_scalar(c, f, &mut out)?,
            }
        }
        Ok(out)
    }

    /// Expands to a list: one element, or one per value of the single `${@f}` it holds.
    pub fn list(&self, f: &Features) -> Result<Vec<String>, ExpandError> {
        let each: Vec<usize> = (0..self.chunks.len())
            .filter(|&i| matches!(self.chunks[i], Chunk::Each { .. }))
            .collect();
        let Some(&at) = each.first() else {
            return Ok(vec![self.one(f)?]);
        };
        if each.len() > 1 {
            return Err(self.fail("only one list macro (`${@f}`) is allowed per element".into()));
        }
        let (mut before, mut after) = (String::new(), String::new());
        for (i, c) in self.chunks.iter().enumerate() {
            if i < at {
                self.push_scalar(c, f, &mut before)?;
            } else if i > at {
                self.push_scalar(c, f, &mut after)?;
            }
        }
        let Chunk::Each { name, required } = &self.chunks[at] else {
            return Ok(Vec::new());
        };
        match f.values(name) {
            Some(vals) => Ok(vals.iter().map(|v| format!("{before}{v}{after}")).collect()),
            None if *required => Err(self.fail(format!(
                "feature {name:?} is not defined (use `${{@{name}}}` if it may be unset)"
            ))),
            None => Ok(Vec::new()),
        }
    }

    fn push_scalar(&self, c: &Chunk, f: &Features, out: &mut String) -> Result<(), ExpandError> {
        match c {
            Chunk::Lit(s) => out.push_str(s),
            Chunk::Value(n) => match f.values(n) {
                Some([v]) => out.push_str(v),
                Some(_) => {
                    return Err(self.fail(format!(
                        "feature {n:?} has several values and cannot expand to one string"
                    )))
                }
                None => {
                    return Err(self.fail(format!(
                        "feature {n:?} is not defined (set it with `-F {n}=VALUE`)"
                    )))
                }
            },
            Chunk::IfSet(n, t) if f.enabled(n) => out.push_str(t),
            Chunk::IfUnset(n, t) if !f.enabled(n) => out.push_str(t),
            Chunk::IfSet(..) | Chunk::IfUnset(..) => {}
            Chunk::Each { .. } => {}
        }
        Ok(())
    }
}

fn parse_macro(body: &str) -> Result<Chunk, String> {
    let (each, required, rest) = if let Some(r) = body.strip_prefix("@@") {
        (true, true, r)
    } else if let Some(r) = body.strip_prefix('@') {
        (true, false, r)
    } else {
        (false, false, body)
    };
    let name_end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
    let (name, tail) = rest.split_at(name_end);
    if name.is_empty() {
        return Err(format!("empty feature name in `${{{body}}}`"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("feature names start with a letter, not {name:?}"));
    }
    let name = name.to_string();
    if each {
        if !tail.is_empty() {
            let at = if required { "@@" } else { "@" };
            return Err(format!("unexpected {tail:?} after `${{{at}{name}`"));
        }
        return Ok(Chunk::Each { name, required });
    }
    let mut t = tail.chars();
    match t.next() {
        None => Ok(Chunk::Value(name)),
        Some('?') => Ok(Chunk::IfSet(name, t.as_str().to_string())),
        Some('!') => Ok(Chunk::IfUnset(name, t.as_str().to_string())),
        Some(c) => Err(format!(
            "unexpected {c:?} after the feature name {name:?} (expected `}}`, `?` or `!`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(ds: &[&str]) -> Features {
        Features::from_directives(ds).unwrap()
    }

    fn one(s: &str, ds: &[&str]) -> Result<String, String> {
        Expansion::parse(s)
            .and_then(|e| e.one(&feats(ds)))
            .map_err(|e| e.reason)
    }

    fn list(s: &str, ds: &[&str]) -> Result<Vec<String>, String> {
        Expansion::parse(s)
            .and_then(|e| e.list(&feats(ds)))
            .map_err(|e| e.reason)
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(one("a/b c", &[]).unwrap(), "a/b c");
        assert!(!Expansion::parse("abc").unwrap().has_macros());
    }

    #[test]
    fn value_and_conditionals() {
        let ds = ["name=helios", "onu"];
        assert_eq!(one("${name}-base.tar", &ds).unwrap(), "helios-base.tar");
        assert_eq!(
            one("base${serdev?-serdev}${onu?-onu}", &ds).unwrap(),
            "base-onu"
        );
        assert_eq!(one("${serdev!plain}", &ds).unwrap(), "plain");
        assert_eq!(one("${onu!}", &ds).unwrap(), "");
        assert_eq!(one("${onu?}", &ds).unwrap(), "");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(one("$$5$$salt", &[]).unwrap(), "$5$salt");
    }

    #[test]
    fn undefined_and_multi_valued_features_are_errors() {
        assert_eq!(
            one("${publisher}", &[]).unwrap_err(),
            "feature \"publisher\" is not defined (set it with `-F publisher=VALUE`)"
        );
        assert_eq!(
            one("${p}", &["p+=a", "p+=b"]).unwrap_err(),
            "feature \"p\" has several values and cannot expand to one string"
        );
    }

    #[test]
    fn list_macros_expand_per_value() {
        let ds = ["pkgs+=vim", "pkgs+=rsync"];
        assert_eq!(
            list("pkg:/${@pkgs}@latest", &ds).unwrap(),
            ["pkg:/vim@latest", "pkg:/rsync@latest"]
        );
        assert_eq!(
            list("pkg:/${@@pkgs}@latest", &ds).unwrap(),
            ["pkg:/vim@latest", "pkg:/rsync@latest"]
        );
        assert_eq!(list("x${onu?-onu}", &["onu"]).unwrap(), ["x-onu"]);
        assert_eq!(
            list("${@pkgs}${@pkgs}", &ds).unwrap_err(),
            "only one list macro (`${@f}`) is allowed per element"
        );
        assert_eq!(
            one("${@pkgs}", &ds).unwrap_err(),
            "`${@pkgs}` expands to a list and is only allowed in list fields"
        );
    }

    /// As in the illumos image-builder (`expansion_missing_multi_maybe`): one `@` and an
    /// unset feature give no element at all.
    #[test]
    fn single_at_of_an_unset_feature_is_an_empty_list() {
        assert_eq!(list("${@none}", &[]).unwrap(), Vec::<String>::new());
        assert_eq!(
            list("pre-${@none}-post", &["x"]).unwrap(),
            Vec::<String>::new()
        );
    }

    /// As in the illumos image-builder (`expansion_missing_multi`): two `@` insist on the
    /// feature being set.
    #[test]
    fn double_at_of_an_unset_feature_is_an_error() {
        assert_eq!(
            list("${@@none}", &[]).unwrap_err(),
            "feature \"none\" is not defined (use `${@none}` if it may be unset)"
        );
        assert_eq!(
            one("${@@pkgs}", &["pkgs=a"]).unwrap_err(),
            "`${@@pkgs}` expands to a list and is only allowed in list fields"
        );
    }

    /// Values come out in the order the directives added them (the illumos image-builder
    /// at 652c899 sorts them instead; see docs/templates.md).
    #[test]
    fn list_values_keep_directive_order() {
        let ds = ["o+=https://b.example/", "o+=https://a.example/"];
        assert_eq!(
            list("${@o}", &ds).unwrap(),
            ["https://b.example/", "https://a.example/"]
        );
    }

    #[test]
    fn malformed_macros_are_errors_not_panics() {
        let cases = [
            ("$", "a lone `$` at the end (write `$$` for a literal `$`)"),
            (
                "a$b",
                "expected `{` or `$` after `$` at byte 1, found 'b' (write `$$` for a literal `$`)",
            ),
            ("${", "unterminated `${`"),
            ("${abc", "unterminated `${`"),
            ("${}", "empty feature name in `${}`"),
            ("${?x}", "empty feature name in `${?x}`"),
            (
                "${a${b}}",
                "macros cannot nest (`$` inside `${...}` at byte 3)",
            ),
            (
                "${a b}",
                "unexpected ' ' after the feature name \"a\" (expected `}`, `?` or `!`)",
            ),
            ("${1a}", "feature names start with a letter, not \"1a\""),
            ("${@a?x}", "unexpected \"?x\" after `${@a`"),
            ("${@@a!x}", "unexpected \"!x\" after `${@@a`"),
            ("${@@@a}", "empty feature name in `${@@@a}`"),
            ("${@}", "empty feature name in `${@}`"),
        ];
        for (text, reason) in cases {
            assert_eq!(Expansion::parse(text).unwrap_err().reason, reason, "{text}");
        }
    }

    #[test]
    fn features_referenced() {
        let e = Expansion::parse("${a}${b?x}${@@c}$$").unwrap();
        assert_eq!(e.features(), ["a", "b", "c"]);
    }
}
