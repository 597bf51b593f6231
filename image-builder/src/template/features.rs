//! Features: named values set with `-F` directives, used by `with`/`without` and macros.
//!
//! Directives apply in order, so a driver script can give defaults that later directives
//! override. They mean what they mean in the illumos image-builder (`src/features.rs`):
//!
//! | directive      | effect                                                   |
//! |----------------|----------------------------------------------------------|
//! | `name`         | add the value `1` (as `name+=1`)                          |
//! | `name=value`   | set `name` to the single value `value`                    |
//! | `name+=value`  | add `value` to `name` (a feature may hold many values)    |
//! | `name-=value`, `name~=value` | remove `value`; the last removal removes `name` |
//! | `^name`        | remove `name` entirely                                   |
//! | `^name-=value`, `^name~=value` | the same as without `^`                  |
//!
//! Names start with an ASCII letter and go on with letters, digits, `_` and single `-`
//! (not two in a row, not at the end). Values are printable ASCII. Values are kept in the
//! order they were added; the illumos image-builder keeps a set and sorts it when it
//! expands `${@f}` (see docs/templates.md, "Differences from the upstream image-builder").

use std::collections::BTreeMap;

/// A directive that does not parse, with the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid feature directive {directive:?}: {reason}")]
pub struct FeatureError {
    pub directive: String,
    pub reason: String,
}

/// The features in force for one build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Values in the order they were added, without duplicates.
    map: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set,
    Add,
    Remove,
    Reset,
}

impl Features {
    /// Applies `directives` in order to an empty feature set.
    pub fn from_directives<I, S>(directives: I) -> Result<Self, FeatureError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut f = Features::default();
        for d in directives {
            f.apply(d.as_ref())?;
        }
        Ok(f)
    }

    /// Applies one directive.
    pub fn apply(&mut self, directive: &str) -> Result<(), FeatureError> {
        let fail = |reason: &str| FeatureError {
            directive: directive.to_string(),
            reason: reason.to_string(),
        };
        let (reset, rest) = match directive.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, directive),
        };
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let (mut name, mut tail) = rest.split_at(name_len);
        // `name-=value`: the hyphen before `=` is the operator, not part of the name.
        if tail.starts_with('=') && name.ends_with('-') {
            name = &name[..name.len() - 1];
            tail = &rest[name.len()..];
        }
        match name.chars().next() {
            None if tail.is_empty() => return Err(fail("the directive is empty")),
            None => return Err(fail("feature names must start with a letter")),
            Some(c) if !c.is_ascii_alphabetic() => {
                return Err(fail("feature names must start with a letter"))
            }
            _ => {}
        }
        if name.ends_with('-') {
            return Err(fail("feature names cannot end with a hyphen"));
        }
        if name.contains("--") {
            return Err(fail("feature names cannot have two hyphens in a row"));
        }
        // The illumos image-builder treats `^name-=value` as `name-=value` (its parser
        // lets the subtraction replace the negation); `^name~=value` crashes it. Both
        // remove the value here, so a driver written for it works unchanged.
        let (op, value) = if tail.is_empty() {
            // A bare name adds `1` to the values, as the illumos image-builder does: after
            // `-F a=x -F a` the feature holds `x` and `1`.
            (if reset { Op::Reset } else { Op::Add }, "1")
        } else if let Some(v) = tail.strip_prefix("-=").or_else(|| tail.strip_prefix("~=")) {
            (Op::Remove, v)
        } else if reset {
            return Err(fail(
                "a negated feature (^name) cannot have a value: write `^name` or `name-=value`",
            ));
        } else if let Some(v) = tail.strip_prefix("+=") {
            (Op::Add, v)
        } else if let Some(v) = tail.strip_prefix('=') {
            (Op::Set, v)
        } else {
            return Err(fail(&format!(
                "expected `=`, `+=`, `-=` or `~=` after the name {name:?}, found {:?}",
                tail.chars().next().unwrap_or(' ')
            )));
        };
        if op != Op::Reset {
            if value.is_empty() {
                return Err(fail("expected a value after the operator"));
            }
            if let Some(c) = value.chars().find(|c| !(' '..='~').contains(c)) {
                return Err(fail(&format!(
                    "feature values must be printable ASCII, found {c:?}"
                )));
            }
        }
        let name = name.to_string();
        match op {
            Op::Reset => {
                self.map.remove(&name);
            }
            Op::Set => {
                self.map.insert(name, vec![value.to_string()]);
            }
            Op::Add => {
                let vals = self.map.entry(name).or_default();
                if !vals.iter().any(|v| v == value) {
                    vals.push(value.to_string());
                }
            }
            Op::Remove => {
                if let Some(vals) = self.map.get_mut(&name) {
                    vals.retain(|v| v != value);
                    if vals.is_empty() {
                        self.map.remove(&name);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `name` is set (to any value).
    pub fn enabled(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// All values of `name`, in the order they were added.
    pub fn values(&self, name: &str) -> Option<&[String]> {
        self.map.get(name).map(Vec::as_slice)
    }

    /// Every feature and its values, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The directives that recreate this set (`name=value` and `name+=value`), sorted.
    pub fn to_directives(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, vals) in &self.map {
            for (i, v) in vals.iter().enumerate() {
                let op = if i == 0 { "=" } else { "+=" };
                out.push(format!("{k}{op}{v}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(ds: &[&str]) -> Features {
        Features::from_directives(ds).unwrap()
    }

    fn err(d: &str) -> String {
        Features::from_directives([d]).unwrap_err().reason
    }

    #[test]
    fn bare_name_sets_one() {
        assert_eq!(f(&["debug"]).values("debug"), Some(&["1".to_string()][..]));
    }

    #[test]
    fn set_replaces_all_values() {
        let x = f(&["a+=x", "a+=y", "a=z"]);
        assert_eq!(x.values("a").unwrap(), ["z"]);
    }

    #[test]
    fn add_keeps_order_and_drops_duplicates() {
        let x = f(&["p+=b", "p+=a", "p+=b"]);
        assert_eq!(x.values("p").unwrap(), ["b", "a"]);
    }

    #[test]
    fn removing_last_value_removes_the_feature() {
        let x = f(&["p+=a", "p+=b", "p-=a", "p~=b"]);
        assert!(!x.enabled("p"));
        let y = f(&["p+=a", "p+=b", "p-=a"]);
        assert_eq!(y.values("p").unwrap(), ["b"]);
    }

    #[test]
    fn hyphenated_names_and_subtraction() {
        let x = f(&["my-house=1", "my-house+=0", "my-house-=1"]);
        assert_eq!(x.values("my-house").unwrap(), ["0"]);
        assert_eq!(
            err("my-house-+=2"),
            "feature names cannot end with a hyphen"
        );
        assert_eq!(
            err("my-house--=0"),
            "feature names cannot end with a hyphen"
        );
        assert_eq!(err("trailing-"), "feature names cannot end with a hyphen");
    }

    #[test]
    fn negation_removes_and_takes_no_value() {
        let x = f(&["a=b", "^a", "^never-set"]);
        assert!(!x.enabled("a"));
        for d in ["^a=x", "^a+=x"] {
            assert_eq!(
                err(d),
                "a negated feature (^name) cannot have a value: write `^name` or `name-=value`",
                "{d}"
            );
        }
        assert_eq!(err("^^a"), "feature names must start with a letter");
    }

    /// The illumos image-builder parses `^a-=x` as `a-=x`; `^a~=x` (which crashes it) is
    /// taken the same way here.
    #[test]
    fn negated_subtraction_is_subtraction() {
        let x = f(&["a+=x", "a+=y", "^a-=x"]);
        assert_eq!(x.values("a").unwrap(), ["y"]);
        let y = f(&["a+=x", "a+=y", "^a~=y"]);
        assert_eq!(y.values("a").unwrap(), ["x"]);
        assert!(!f(&["a=x", "^a-=x"]).enabled("a"));
        assert!(!f(&["^a-=x"]).enabled("a"));
    }

    /// A bare name adds `1`, as in the illumos image-builder: after `-F a=x -F a` the
    /// feature has both values, so `${a}` is an error and `${@a}` gives both.
    #[test]
    fn bare_name_after_a_value_adds_one() {
        let x = f(&["a=x", "a"]);
        assert_eq!(x.values("a").unwrap(), ["x", "1"]);
        assert_eq!(f(&["a", "a"]).values("a").unwrap(), ["1"]);
        assert_eq!(f(&["a", "a=z"]).values("a").unwrap(), ["z"]);
    }

    /// Two hyphens in a row are refused anywhere in a name, as the illumos image-builder
    /// refuses them (`my-beautiful-house--=0` in its tests, and `a--b` the same way).
    #[test]
    fn double_hyphens_are_refused() {
        assert_eq!(
            err("a--b=1"),
            "feature names cannot have two hyphens in a row"
        );
        assert_eq!(
            err("a--b"),
            "feature names cannot have two hyphens in a row"
        );
        assert_eq!(
            err("^a--b"),
            "feature names cannot have two hyphens in a row"
        );
        assert_eq!(f(&["a-b-c=1"]).values("a-b-c").unwrap(), ["1"]);
        assert_eq!(f(&["a-_b=1"]).values("a-_b").unwrap(), ["1"]);
    }

    #[test]
    fn malformed_directives_name_the_problem() {
        assert_eq!(err(""), "the directive is empty");
        assert_eq!(err("^"), "the directive is empty");
        assert_eq!(err("1a"), "feature names must start with a letter");
        assert_eq!(err("=x"), "feature names must start with a letter");
        assert_eq!(err("a="), "expected a value after the operator");
        assert_eq!(err("a+="), "expected a value after the operator");
        assert_eq!(
            err("a*b"),
            "expected `=`, `+=`, `-=` or `~=` after the name \"a\", found '*'"
        );
        assert_eq!(
            err("a=caf\u{e9}"),
            "feature values must be printable ASCII, found '\u{e9}'"
        );
        assert_eq!(
            err("a=x\ty"),
            "feature values must be printable ASCII, found '\\t'"
        );
    }

    #[test]
    fn values_may_contain_operators() {
        let x = f(&["dd=pkg:/some/thing:3=fine"]);
        assert_eq!(x.values("dd").unwrap(), ["pkg:/some/thing:3=fine"]);
    }

    #[test]
    fn directives_round_trip() {
        let x = f(&["b=2", "a+=x", "a+=y"]);
        assert_eq!(x.to_directives(), ["a=x", "a+=y", "b=2"]);
        assert_eq!(Features::from_directives(x.to_directives()).unwrap(), x);
    }
}
