//! PyYAML's YAML 1.1 scalar resolution (`yaml/resolver.py` and the `construct_yaml_*`
//! functions of `yaml/constructor.py`'s `SafeConstructor`), which is what cloud-init
//! reads user-data with. Each matcher below is one of PyYAML's implicit resolver
//! regular expressions, written out by hand; `tests/yaml_resolver.rs` compares them
//! with PyYAML itself on a generated list of scalars.

/// What a plain (unquoted, untagged) scalar resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Timestamp,
    /// `<<`: a merge key.
    Merge,
    /// `=`: PyYAML resolves it to `tag:yaml.org,2002:value`, which `safe_load` refuses.
    Value,
    Str,
}

fn digits(s: &[u8], ok: impl Fn(u8) -> bool) -> usize {
    s.iter().take_while(|b| ok(**b)).count()
}

fn sign(s: &[u8]) -> &[u8] {
    match s.first() {
        Some(b'-' | b'+') => &s[1..],
        _ => s,
    }
}

fn dec_(b: u8) -> bool {
    b.is_ascii_digit() || b == b'_'
}

/// `(?::[0-5]?[0-9])+` at the start of `s`; how many bytes it takes (0 when none).
fn sexagesimal_tail(s: &[u8]) -> usize {
    let mut i = 0;
    loop {
        if s.get(i) != Some(&b':') {
            return i;
        }
        let d = digits(&s[i + 1..], |b| b.is_ascii_digit());
        // `[0-5]?[0-9]`: one digit, or two with the first 0-5. A regex would backtrack
        // to one digit when two are there but more follow; then the next byte is a digit,
        // never `:` or `.`, and the whole match fails anyway.
        let take = match d {
            1 => 1,
            2 if s[i + 1] <= b'5' => 2,
            2 => return i,
            _ => return i,
        };
        i += 1 + take;
    }
}

/// `[eE][-+][0-9]+` at the start of `s`, or nothing.
fn exponent(s: &[u8]) -> usize {
    if matches!(s.first(), Some(b'e' | b'E')) && matches!(s.get(1), Some(b'-' | b'+')) {
        let d = digits(&s[2..], |b| b.is_ascii_digit());
        if d > 0 {
            return 2 + d;
        }
    }
    0
}

fn is_bool(s: &str) -> bool {
    matches!(
        s,
        "yes"
            | "Yes"
            | "YES"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    // [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    let full = |n: usize| n == b.len();
    {
        let t = sign(b);
        let off = b.len() - t.len();
        if t.first().is_some_and(u8::is_ascii_digit) {
            let n = digits(t, dec_);
            if t.get(n) == Some(&b'.') {
                let m = digits(&t[n + 1..], dec_);
                let e = exponent(&t[n + 1 + m..]);
                if full(off + n + 1 + m + e) {
                    return true;
                }
            }
            // [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
            let x = sexagesimal_tail(&t[n..]);
            if x > 0 && t.get(n + x) == Some(&b'.') {
                let m = digits(&t[n + x + 1..], dec_);
                if full(off + n + x + 1 + m) {
                    return true;
                }
            }
        }
        // [-+]?\.(?:inf|Inf|INF)
        if matches!(
            std::str::from_utf8(t).unwrap_or(""),
            ".inf" | ".Inf" | ".INF"
        ) {
            return true;
        }
    }
    // \.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    if b.first() == Some(&b'.') && b.get(1).is_some_and(u8::is_ascii_digit) {
        let n = 1 + digits(&b[1..], dec_);
        if full(n + exponent(&b[n..])) {
            return true;
        }
    }
    matches!(s, ".nan" | ".NaN" | ".NAN")
}

fn is_int(s: &str) -> bool {
    let t = sign(s.as_bytes());
    let all = |r: &[u8], ok: fn(u8) -> bool| !r.is_empty() && r.iter().all(|b| ok(*b));
    if let Some(r) = t.strip_prefix(b"0b") {
        if all(r, |b| b == b'0' || b == b'1' || b == b'_') {
            return true;
        }
    }
    if let Some(r) = t.strip_prefix(b"0x") {
        if all(r, |b| b.is_ascii_hexdigit() || b == b'_') {
            return true;
        }
    }
    if let Some(r) = t.strip_prefix(b"0") {
        if r.is_empty() || all(r, |b| (b'0'..=b'7').contains(&b) || b == b'_') {
            return true;
        }
        return false;
    }
    if t.first().is_some_and(|b| (b'1'..=b'9').contains(b)) {
        let n = digits(t, dec_);
        if n == t.len() {
            return true;
        }
        let x = sexagesimal_tail(&t[n..]);
        return x > 0 && n + x == t.len();
    }
    false
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    // [0-9]{4}-[0-9][0-9]-[0-9][0-9]
    if b.len() == 10
        && (0..4).all(d)
        && b[4] == b'-'
        && d(5)
        && d(6)
        && b[7] == b'-'
        && d(8)
        && d(9)
    {
        return true;
    }
    // [0-9]{4}-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9]
    // (?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?
    let mut i = 0;
    if !(0..4).all(d) {
        return false;
    }
    i += 4;
    let one_or_two = |i: &mut usize| -> bool {
        if !d(*i) {
            return false;
        }
        *i += 1;
        if d(*i) {
            *i += 1;
        }
        true
    };
    for _ in 0..2 {
        if b.get(i) != Some(&b'-') {
            return false;
        }
        i += 1;
        if !one_or_two(&mut i) {
            return false;
        }
    }
    match b.get(i) {
        Some(b'T' | b't') => i += 1,
        Some(b' ' | b'\t') => {
            while matches!(b.get(i), Some(b' ' | b'\t')) {
                i += 1
            }
        }
        _ => return false,
    }
    if !one_or_two(&mut i) {
        return false;
    }
    for _ in 0..2 {
        if b.get(i) != Some(&b':') || !d(i + 1) || !d(i + 2) {
            return false;
        }
        i += 3;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while d(i) {
            i += 1;
        }
    }
    if i == b.len() {
        return true;
    }
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match b.get(i) {
        Some(b'Z') => i += 1,
        Some(b'-' | b'+') => {
            i += 1;
            if !one_or_two(&mut i) {
                return false;
            }
            if b.get(i) == Some(&b':') {
                if !d(i + 1) || !d(i + 2) {
                    return false;
                }
                i += 3;
            }
        }
        _ => return false,
    }
    i == b.len()
}

/// The tag PyYAML's resolver gives a plain scalar. The resolvers are tried in the order
/// PyYAML registers them, for the scalar's first character.
pub fn resolve(s: &str) -> Kind {
    let first = s.bytes().next();
    let starts = |set: &[u8]| first.is_some_and(|c| set.contains(&c));
    if starts(b"yYnNtTfFoO") && is_bool(s) {
        return Kind::Bool;
    }
    if starts(b"-+0123456789.") && is_float(s) {
        return Kind::Float;
    }
    if starts(b"-+0123456789") && is_int(s) {
        return Kind::Int;
    }
    if s == "<<" {
        return Kind::Merge;
    }
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Kind::Null;
    }
    if starts(b"0123456789") && is_timestamp(s) {
        return Kind::Timestamp;
    }
    if s == "=" {
        return Kind::Value;
    }
    Kind::Str
}

/// `construct_yaml_bool`: `None` when the text is not one of PyYAML's words.
pub fn bool_of(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// `construct_yaml_int`: `_` removed, `0b`, `0x`, a leading `0` (octal) and `a:b:c`
/// (base 60) as PyYAML reads them.
pub fn int_of(s: &str) -> Option<i128> {
    let v: String = s.chars().filter(|c| *c != '_').collect();
    let (neg, v) = match v.as_bytes().first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, &v[..]),
    };
    let n = if v == "0" {
        0
    } else if let Some(r) = v.strip_prefix("0b") {
        i128::from_str_radix(r, 2).ok()?
    } else if let Some(r) = v.strip_prefix("0x") {
        i128::from_str_radix(r, 16).ok()?
    } else if v.starts_with('0') {
        i128::from_str_radix(v, 8).ok()?
    } else if v.contains(':') {
        let mut n: i128 = 0;
        for part in v.split(':') {
            n = n.checked_mul(60)?.checked_add(part.parse::<i128>().ok()?)?;
        }
        n
    } else {
        v.parse::<i128>().ok()?
    };
    Some(if neg { -n } else { n })
}

/// `construct_yaml_float`.
pub fn float_of(s: &str) -> Option<f64> {
    let v: String = s
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    let (neg, v) = match v.as_bytes().first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, &v[..]),
    };
    let f = if v == ".inf" {
        f64::INFINITY
    } else if v == ".nan" {
        return Some(f64::NAN);
    } else if v.contains(':') {
        let mut f = 0.0;
        for part in v.split(':') {
            f = f * 60.0 + py_float(part)?;
        }
        f
    } else {
        py_float(v)?
    };
    Some(if neg { -f } else { f })
}

/// Python's `float()` for the shapes the resolver lets through (`1.`, `.5`, `1.e+3`).
fn py_float(s: &str) -> Option<f64> {
    let mut t = s.to_string();
    if let Some(i) = t.find('.') {
        if !t[i + 1..].starts_with(|c: char| c.is_ascii_digit()) {
            t.insert(i + 1, '0');
        }
        if i == 0 {
            t.insert(0, '0');
        }
    }
    t.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyyaml_words_and_numbers() {
        assert_eq!(resolve("yes"), Kind::Bool);
        assert_eq!(resolve("y"), Kind::Str);
        assert_eq!(resolve("0644"), Kind::Int);
        assert_eq!(int_of("0644"), Some(420));
        assert_eq!(resolve("0o644"), Kind::Str);
        assert_eq!(resolve("08"), Kind::Str);
        assert_eq!(resolve("1:30"), Kind::Int);
        assert_eq!(int_of("1:30"), Some(90));
        // As in PyYAML: an unquoted MAC address of decimal digits is a base-60 integer.
        assert_eq!(resolve("52:54:00:12:34:56"), Kind::Int);
        assert_eq!(resolve("fa:16:3e:00:00:01"), Kind::Str);
        assert_eq!(resolve("1e5"), Kind::Str);
        assert_eq!(resolve("1.5e+3"), Kind::Float);
        assert_eq!(float_of("1."), Some(1.0));
        assert_eq!(resolve("2001-12-14"), Kind::Timestamp);
        assert_eq!(resolve("~"), Kind::Null);
        assert_eq!(resolve("<<"), Kind::Merge);
    }
}
