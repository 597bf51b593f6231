//! The certificates an HTTPS registry is checked against.
//!
//! By default the Mozilla roots built into the client (webpki-roots). With
//! `SSL_CERT_FILE` (a PEM bundle) or `SSL_CERT_DIR` (directories of PEM files, separated
//! by `:`), the certificates found there instead, as OpenSSL, curl and Go read these
//! variables: a registry signed by a private CA is trusted by pointing `SSL_CERT_FILE` at
//! a bundle that holds that CA (the system's bundle with the CA added, to trust both).

use std::path::{Path, PathBuf};

use ureq::tls::{parse_pem, Certificate, PemItem, RootCerts};

use super::StoreError;

pub(super) const CERT_FILE_ENV: &str = "SSL_CERT_FILE";
pub(super) const CERT_DIR_ENV: &str = "SSL_CERT_DIR";

/// The roots to trust, given the environment.
pub(super) fn root_certs(env: &dyn Fn(&str) -> Option<String>) -> Result<RootCerts, StoreError> {
    let file = env(CERT_FILE_ENV);
    let dirs = env(CERT_DIR_ENV);
    if file.is_none() && dirs.is_none() {
        return Ok(RootCerts::WebPki);
    }
    let mut certs = Vec::new();
    if let Some(file) = file {
        let path = PathBuf::from(file);
        let found = read_pem(&path, CERT_FILE_ENV)?;
        if found.is_empty() {
            return Err(bad(CERT_FILE_ENV, &path, "holds no PEM certificate"));
        }
        certs.extend(found);
    }
    if let Some(dirs) = dirs {
        for dir in dirs.split(':').filter(|d| !d.is_empty()) {
            let dir = Path::new(dir);
            let before = certs.len();
            let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for f in files {
                certs.extend(read_pem(&f, CERT_DIR_ENV)?);
            }
            if certs.len() == before {
                return Err(bad(CERT_DIR_ENV, dir, "holds no PEM certificate"));
            }
        }
    }
    tracing::debug!(
        count = certs.len(),
        "trusting the certificates of SSL_CERT_FILE/SSL_CERT_DIR"
    );
    Ok(RootCerts::new_with_certs(&certs))
}

/// The certificates of a PEM file (other sections, such as keys, are skipped).
fn read_pem(path: &Path, var: &'static str) -> Result<Vec<Certificate<'static>>, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let mut certs = Vec::new();
    for item in parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(ureq::Error::Pem(e)) => {
                return Err(bad(var, path, &format!("is not valid PEM: {e}")))
            }
            Err(e) => return Err(bad(var, path, &format!("is not valid PEM: {e}"))),
        }
    }
    Ok(certs)
}

fn bad(var: &'static str, path: &Path, reason: &str) -> StoreError {
    StoreError::Certificates {
        var,
        file: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    // A syntactically valid PEM section; its bytes need not be a certificate here.
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";

    #[test]
    fn built_in_roots_unless_a_file_or_directory_is_named() {
        let none = root_certs(&env_of(vec![])).unwrap();
        assert!(matches!(none, RootCerts::WebPki));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, format!("junk before\n{PEM}{PEM}")).unwrap();
        let env = env_of(vec![(CERT_FILE_ENV, f.display().to_string())]);
        match root_certs(&env).unwrap() {
            RootCerts::Specific(c) => assert_eq!(c.len(), 2),
            _ => panic!("the file's certificates were not used"),
        }
        let env = env_of(vec![(CERT_DIR_ENV, format!("{}:", dir.path().display()))]);
        match root_certs(&env).unwrap() {
            RootCerts::Specific(c) => assert_eq!(c.len(), 2),
            _ => panic!("the directory's certificates were not used"),
        }
    }

    #[test]
    fn a_bad_or_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let env = env_of(vec![(CERT_FILE_ENV, missing.display().to_string())]);
        let e = root_certs(&env).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let env = env_of(vec![(CERT_FILE_ENV, empty.display().to_string())]);
        let e = root_certs(&env).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        assert!(e.contains(CERT_FILE_ENV), "{e}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n").unwrap();
        let env = env_of(vec![(CERT_FILE_ENV, broken.display().to_string())]);
        let e = root_certs(&env).unwrap_err().to_string();
        assert!(
            e.contains("broken.pem") && e.contains("not valid PEM"),
            "{e}"
        );
        let env = env_of(vec![(
            CERT_DIR_ENV,
            dir.path().join("nodir").display().to_string(),
        )]);
        let e = root_certs(&env).unwrap_err().to_string();
        assert!(e.contains("nodir"), "{e}");
    }
}
