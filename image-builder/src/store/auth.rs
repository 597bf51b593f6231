//! Registry credentials, from the environment or the standard container auth files,
//! never from the command line (where `ps` shows them) and never logged.
//!
//! In order: `IMAGE_BUILDER_STORE_USERNAME` with `IMAGE_BUILDER_STORE_PASSWORD`; then the
//! `auths` entry for the registry's `HOST[:PORT]` in `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json` (containers-auth.json(5)), and
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (Docker's format, the same
//! `auths` map). An entry holds `auth` (base64 of `USER:PASSWORD`) or `username` and
//! `password`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use super::StoreError;

pub(super) const USER_ENV: &str = "IMAGE_BUILDER_STORE_USERNAME";
pub(super) const PASSWORD_ENV: &str = "IMAGE_BUILDER_STORE_PASSWORD";

#[derive(Clone, PartialEq, Eq)]
pub(super) struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.user)
    }
}

impl Credentials {
    /// The value of a `Basic` Authorization header.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The auth files to read, in order, given the environment.
fn auth_files(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        files.push(Path::new(&d).join("containers/auth.json"));
    }
    match env("DOCKER_CONFIG") {
        Some(d) => files.push(Path::new(&d).join("config.json")),
        None => {
            if let Some(h) = env("HOME") {
                files.push(Path::new(&h).join(".docker/config.json"));
            }
        }
    }
    files
}

/// Credentials for `host` (`HOST[:PORT]`), or `None` for anonymous access, with the
/// environment read through `env`.
pub(super) fn lookup_with(
    host: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, StoreError> {
    if let (Some(user), Some(password)) = (env(USER_ENV), env(PASSWORD_ENV)) {
        return Ok(Some(Credentials { user, password }));
    }
    for file in auth_files(env) {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let bad = |reason: String| StoreError::Credentials {
            host: host.to_string(),
            file: file.clone(),
            reason,
        };
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("does not parse: {e}")))?;
        if let Some(entry) = doc["auths"]
            .as_object()
            .and_then(|auths| auths.iter().find(|(k, _)| normalize(k) == host))
            .map(|(_, v)| v)
        {
            if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| bad("its auth field is not base64".into()))?;
                let text =
                    String::from_utf8(raw).map_err(|_| bad("its auth field is not text".into()))?;
                let (user, password) = text
                    .split_once(':')
                    .ok_or_else(|| bad("its auth field is not USER:PASSWORD".into()))?;
                return Ok(Some(Credentials {
                    user: user.to_string(),
                    password: password.to_string(),
                }));
            }
            if let (Some(user), Some(password)) =
                (entry["username"].as_str(), entry["password"].as_str())
            {
                return Ok(Some(Credentials {
                    user: user.to_string(),
                    password: password.to_string(),
                }));
            }
        }
        if doc["credHelpers"].get(host).is_some() || doc["credsStore"].is_string() {
            tracing::warn!(
                file = %file.display(),
                "credential helpers are not supported; set {USER_ENV} and {PASSWORD_ENV} instead"
            );
        }
    }
    Ok(None)
}

/// An `auths` key as `HOST[:PORT]`: without a scheme or a path (Docker writes
/// `https://index.docker.io/v1/` for its own registry).
fn normalize(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn docker_config_auth_field_and_precedence() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".docker")).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        std::fs::write(
            home.path().join(".docker/config.json"),
            format!(r#"{{"auths":{{"https://reg.example:5000/v2/":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let home_s = home.path().display().to_string();
        let env = env_of(&[("HOME", home_s.clone())]);
        let c = lookup_with("reg.example:5000", &env).unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3:cret"));
        assert_eq!(lookup_with("reg.example", &env).unwrap(), None);
        // The environment wins over the file.
        let env = env_of(&[
            ("HOME", home_s),
            (USER_ENV, "bob".into()),
            (PASSWORD_ENV, "pw".into()),
        ]);
        let c = lookup_with("reg.example:5000", &env).unwrap().unwrap();
        assert_eq!(c.user, "bob");
        assert!(!format!("{c:?}").contains("pw"), "Debug shows the password");
    }

    #[test]
    fn containers_auth_file_username_password_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        std::fs::write(&f, r#"{"auths":{"reg":{"username":"u","password":"p"}}}"#).unwrap();
        let env = env_of(&[("REGISTRY_AUTH_FILE", f.display().to_string())]);
        let c = lookup_with("reg", &env).unwrap().unwrap();
        assert_eq!(c.basic(), "Basic dTpw");
        std::fs::write(&f, r#"{"auths":{"reg":{"auth":"!!"}}}"#).unwrap();
        let e = lookup_with("reg", &env).unwrap_err().to_string();
        assert!(e.contains("auth.json") && e.contains("not base64"), "{e}");
    }
}
