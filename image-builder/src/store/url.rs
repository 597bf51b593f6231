//! Store addresses: `oci://HOST[:PORT]/REPO` (a registry speaking the OCI distribution
//! API; `oci+https://` to speak HTTPS to a loopback host too) and `file:///DIR` (an OCI
//! image layout directory), and artifact references (a store address with `:TAG` or
//! `@sha256:HEX`).

use std::fmt;
use std::path::PathBuf;

use super::StoreError;

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A registry: `host` with an optional port, and a repository path. `https` is set
    /// by `oci+https://`, which asks for HTTPS even for a loopback host.
    Registry {
        host: String,
        port: Option<u16>,
        repo: String,
        https: bool,
    },
    /// An OCI image layout directory.
    Layout { dir: PathBuf },
}

impl StoreUrl {
    pub fn parse(text: &str) -> Result<StoreUrl, StoreError> {
        let bad = |why: &str| StoreError::BadUrl {
            url: text.to_string(),
            why: why.to_string(),
        };
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file:// store needs an absolute path (file:///DIR)"));
            }
            if path.len() > 1 && path.trim_end_matches('/').is_empty() {
                return Err(bad("the directory is empty"));
            }
            return Ok(StoreUrl::Layout {
                dir: PathBuf::from(path),
            });
        }
        let (rest, https) = if let Some(rest) = text.strip_prefix("oci://") {
            (rest, false)
        } else if let Some(rest) = text.strip_prefix("oci+https://") {
            (rest, true)
        } else {
            return Err(bad(
                "a store is oci://HOST[:PORT]/REPO, oci+https://HOST[:PORT]/REPO or file:///DIR",
            ));
        };
        let Some((hostport, repo)) = rest.split_once('/') else {
            return Err(bad("no repository after the host (oci://HOST[:PORT]/REPO)"));
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.starts_with('[') || h.ends_with(']') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| bad(&format!("the port {p:?} is not a number from 1 to 65535")))?;
                if port == 0 {
                    return Err(bad("the port 0 is not a port"));
                }
                (h.to_string(), Some(port))
            }
            _ => (hostport.to_string(), None),
        };
        if host.is_empty() || !host.chars().all(host_char) {
            return Err(bad(&format!(
                "the host {host:?} is not a host name or address"
            )));
        }
        let repo = repo.trim_end_matches('/');
        if !valid_repo(repo) {
            return Err(bad(&format!(
                "the repository {repo:?} is not a repository name (lower-case letters, digits, \
                 and . _ __ - between them, in /-separated parts)"
            )));
        }
        Ok(StoreUrl::Registry {
            host,
            port,
            repo: repo.to_string(),
            https,
        })
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Registry {
                host,
                port,
                repo,
                https,
            } => {
                let scheme = if *https { "oci+https" } else { "oci" };
                match port {
                    Some(p) => write!(f, "{scheme}://{host}:{p}/{repo}"),
                    None => write!(f, "{scheme}://{host}/{repo}"),
                }
            }
            StoreUrl::Layout { dir } => write!(f, "file://{}", dir.display()),
        }
    }
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':')
}

/// The distribution spec's repository name grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn valid_repo(repo: &str) -> bool {
    !repo.is_empty() && repo.len() <= 255 && repo.split('/').all(valid_component)
}

fn valid_component(part: &str) -> bool {
    let b = part.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or a run of "-".
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !b.get(i).is_some_and(|c| alnum(*c)) {
            return false;
        }
    }
    true
}

/// The distribution spec's tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `sha256:` and 64 lower-case hex digits: the only digests this store writes or accepts.
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

/// One artifact in a store: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    pub store: StoreUrl,
    /// A tag, or a `sha256:` digest.
    pub reference: String,
}

impl ArtifactRef {
    /// `oci://HOST[:PORT]/REPO:TAG`, `oci://HOST[:PORT]/REPO@sha256:HEX`, or the same
    /// after `file:///DIR` (the tag after the last `:` of the last path component).
    pub fn parse(text: &str) -> Result<ArtifactRef, StoreError> {
        let bad = |why: &str| StoreError::BadUrl {
            url: text.to_string(),
            why: why.to_string(),
        };
        let (base, reference) = if let Some((base, digest)) = text.rsplit_once('@') {
            if !valid_digest(digest) {
                return Err(bad(&format!("{digest:?} is not a sha256:HEX digest")));
            }
            (base, digest.to_string())
        } else {
            let last_slash = text.rfind('/').unwrap_or(0);
            match text[last_slash..].rsplit_once(':') {
                Some((_, tag)) => {
                    if !valid_tag(tag) {
                        return Err(bad(&format!("{tag:?} is not a tag")));
                    }
                    (&text[..text.len() - tag.len() - 1], tag.to_string())
                }
                None => return Err(bad("no :TAG or @sha256:HEX after the repository")),
            }
        };
        Ok(ArtifactRef {
            store: StoreUrl::parse(base)?,
            reference,
        })
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reference.starts_with("sha256:") {
            write!(f, "{}@{}", self.store, self.reference)
        } else {
            write!(f, "{}:{}", self.store, self.reference)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_urls() {
        assert_eq!(
            StoreUrl::parse("oci://127.0.0.1:5000/ib/stages").unwrap(),
            StoreUrl::Registry {
                host: "127.0.0.1".into(),
                port: Some(5000),
                repo: "ib/stages".into(),
                https: false,
            }
        );
        assert_eq!(
            StoreUrl::parse("oci://registry.example.org/a-b/c__d/").unwrap(),
            StoreUrl::Registry {
                host: "registry.example.org".into(),
                port: None,
                repo: "a-b/c__d".into(),
                https: false,
            }
        );
        for bad in [
            "oci://host",
            "oci://host/",
            "oci://host:0/r",
            "oci://host:99999/r",
            "oci://host/Upper",
            "oci://host/a..b",
            "oci://host/a_",
            "oci://host/a___b",
            "oci://ho st/r",
            "http://host/r",
            "file://relative/dir",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn layout_urls_and_display_round_trip() {
        let u = StoreUrl::parse("file:///var/tmp/store").unwrap();
        assert_eq!(
            u,
            StoreUrl::Layout {
                dir: "/var/tmp/store".into()
            }
        );
        assert_eq!(u.to_string(), "file:///var/tmp/store");
        let r = StoreUrl::parse("oci://h:1/r").unwrap();
        assert_eq!(r.to_string(), "oci://h:1/r");
        let t = StoreUrl::parse("oci+https://127.0.0.1:5000/r").unwrap();
        assert!(matches!(t, StoreUrl::Registry { https: true, .. }));
        assert_eq!(t.to_string(), "oci+https://127.0.0.1:5000/r");
        let a = ArtifactRef::parse("oci+https://127.0.0.1:5000/r:v1").unwrap();
        assert_eq!((a.store, a.reference.as_str()), (t, "v1"));
        assert!(StoreUrl::parse("oci+http://127.0.0.1/r").is_err());
    }

    #[test]
    fn artifact_refs() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ArtifactRef::parse(&format!("oci://h:5000/r/s@{d}")).unwrap();
        assert_eq!(r.reference, d);
        assert_eq!(r.to_string(), format!("oci://h:5000/r/s@{d}"));
        let t = ArtifactRef::parse("oci://h:5000/r/s:v1.2").unwrap();
        assert_eq!(t.reference, "v1.2");
        assert_eq!(
            t.store,
            StoreUrl::Registry {
                host: "h".into(),
                port: Some(5000),
                repo: "r/s".into(),
                https: false,
            }
        );
        let f = ArtifactRef::parse("file:///srv/store:image").unwrap();
        assert_eq!(
            f.store,
            StoreUrl::Layout {
                dir: "/srv/store".into()
            }
        );
        assert!(ArtifactRef::parse("oci://h:5000/r").is_err());
        assert!(ArtifactRef::parse("oci://h/r@sha256:abc").is_err());
        assert!(ArtifactRef::parse("oci://h/r:.bad").is_err());
    }

    #[test]
    fn tags_and_digests() {
        assert!(valid_tag("stage-0123"));
        assert!(valid_tag(&"a".repeat(128)));
        assert!(!valid_tag(&"a".repeat(129)));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag("a/b"));
        assert!(valid_digest(&format!("sha256:{}", "0f".repeat(32))));
        assert!(!valid_digest(&format!("sha256:{}", "0F".repeat(32))));
        assert!(!valid_digest("sha512:00"));
    }
}
