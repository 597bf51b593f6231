//! The `zone` target's own rules: which brands, compressions and UUIDs it accepts.

use super::model::{Zone, ZoneOutput};

/// Brands whose zones boot from a file tree this builder can produce.
pub const BRANDS: &[&str] = &[
    "ipkg", "lipkg", "nlipkg", "sparse", "pkgsrc", "illumos", "lx",
];

/// Compressions for the tarball and the stream.
pub const COMPRESSIONS: &[&str] = &["none", "gzip", "zstd", "xz"];

/// The version recorded when the template gives none.
pub const DEFAULT_VERSION: &str = "1.0.0";

impl Zone {
    /// The outputs to write, `tarball` when none are listed.
    pub fn wanted(&self) -> Vec<ZoneOutput> {
        if self.outputs.is_empty() {
            vec![ZoneOutput::Tarball]
        } else {
            self.outputs.clone()
        }
    }

    pub fn compression_name(&self) -> &str {
        self.compression.as_deref().unwrap_or("none")
    }

    /// The file name suffix of the chosen compression (`""` for none).
    pub fn suffix(&self) -> &'static str {
        match self.compression_name() {
            "gzip" => ".gz",
            "zstd" => ".zst",
            "xz" => ".xz",
            _ => "",
        }
    }
}

/// Problems with a `zone` target, as (field, message).
pub fn check(z: &Zone) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if z.name.is_empty() || z.name.contains(['@', ' ', '/']) || z.name.starts_with('.') {
        out.push((
            "name",
            format!(
                "invalid zone image name {:?}: one dataset name component",
                z.name
            ),
        ));
    }
    if !BRANDS.contains(&z.brand.as_str()) {
        let why = if matches!(z.brand.as_str(), "bhyve" | "kvm") {
            format!(
                "a {} zone boots a disk image, not a file tree: build a \"pool\" image for it",
                z.brand
            )
        } else {
            format!("unknown zone brand {:?}", z.brand)
        };
        out.push((
            "brand",
            format!("{why}; expected one of {}", BRANDS.join(", ")),
        ));
    }
    if let Some(c) = &z.compression {
        if !COMPRESSIONS.contains(&c.as_str()) {
            out.push((
                "compression",
                format!(
                    "unknown compression {c:?}: expected one of {}",
                    COMPRESSIONS.join(", ")
                ),
            ));
        }
    }
    for (i, o) in z.outputs.iter().enumerate() {
        if z.outputs[..i].contains(o) {
            out.push(("outputs", format!("{o:?} is listed twice")));
        }
    }
    if let Some(v) = &z.version {
        if v.is_empty() || v.contains(char::is_whitespace) {
            out.push(("version", format!("invalid version {v:?}")));
        }
    }
    if let Some(u) = &z.uuid {
        if !is_uuid(u) {
            out.push((
                "uuid",
                format!("{u:?} is not a UUID (expected 8-4-4-4-12 lowercase hex digits)"),
            ));
        }
    }
    out
}

/// Whether `s` is a UUID in its canonical lowercase form.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// A random (version 4) UUID (`uuid`, from the system's random source).
pub fn random_uuid() -> std::io::Result<String> {
    Ok(uuid::Uuid::new_v4().hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let a = random_uuid().unwrap();
        let b = random_uuid().unwrap();
        assert!(is_uuid(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]));
        assert!(!is_uuid("0000-bad"));
        assert!(!is_uuid("8E9DA1C2-0000-4000-8000-000000000000"));
    }
}
