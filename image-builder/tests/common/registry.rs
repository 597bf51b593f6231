//! A real registry for the store's tests: Debian's `docker-registry` (the CNCF
//! distribution server) on 127.0.0.1 with its storage in a temporary directory and a
//! generated config. `scripts/test` installs it; without it the tests say `skipped: ...`,
//! except under CI (`CI` set), where they fail.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use image_builder::store::{ArtifactFile, StoreUrl};

pub const REGISTRY: &str = "/usr/bin/docker-registry";

/// Say why a test is skipped; under CI a missing tool fails the test instead.
pub fn skip(why: &str) -> bool {
    eprintln!("skipped: {why}");
    assert!(std::env::var_os("CI").is_none_or(|v| v.is_empty()), "{why}");
    true
}

pub fn no_registry() -> bool {
    !Path::new(REGISTRY).exists()
        && skip(&format!(
            "{REGISTRY} is missing (Debian package docker-registry)"
        ))
}

/// A free TCP port on 127.0.0.1 (free when asked).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A registry on 127.0.0.1 with its storage under `root`; killed when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
    root: PathBuf,
    /// `oci` or `oci+https`.
    scheme: &'static str,
}

impl Registry {
    pub fn start(root: &Path) -> Registry {
        Registry::start_with(root, "")
    }

    /// With `auth`, a YAML `auth:` section (indented two spaces) for the config.
    pub fn start_with(root: &Path, auth: &str) -> Registry {
        Registry::start_config(root, auth, None)
    }

    /// With `auth` as above and, with `tls`, HTTPS with that certificate and key (PEM).
    pub fn start_config(root: &Path, auth: &str, tls: Option<(&Path, &Path)>) -> Registry {
        let port = free_port();
        let storage = root.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let config = root.join(format!("config-{port}.yml"));
        let tls_section = match tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\n{auth}http:\n  \
                 addr: 127.0.0.1:{port}\n{tls_section}",
                storage.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(root.join(format!("registry-{port}.log"))).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            port,
            root: root.to_path_buf(),
            scheme: if tls.is_some() { "oci+https" } else { "oci" },
        }
    }

    /// The store address of a repository in this registry.
    pub fn address(&self, repo: &str) -> String {
        format!("{}://127.0.0.1:{}/{repo}", self.scheme, self.port)
    }

    pub fn url(&self, repo: &str) -> StoreUrl {
        StoreUrl::parse(&self.address(repo)).unwrap()
    }

    /// What the registry wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join(format!("registry-{}.log", self.port)))
            .unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The file holding a blob in the registry's filesystem storage driver.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.root.join(format!(
            "storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn write_file(dir: &Path, name: &str, bytes: &[u8], media_type: &str) -> ArtifactFile {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    ArtifactFile {
        path,
        media_type: media_type.into(),
        name: name.into(),
    }
}
