//! The NoCloud seed a test boot gets: a small FAT volume labelled `cidata` holding
//! `meta-data` (the instance id and host name) and `user-data` (`#cloud-config` with the
//! SSH key the run generated), the format sysconfig's NoCloud source reads.

use std::path::{Path, PathBuf};

use runner::{Cmd, Runner};

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Run(#[from] runner::RunError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A seed volume and the key pair whose public half it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub volume: PathBuf,
    pub private_key: PathBuf,
    pub public_key: String,
    pub instance_id: String,
}

/// FAT12 in 1 KiB blocks: 1440 is a floppy, ample for three small files, and small enough
/// for any NoCloud reader.
const BLOCKS: &str = "1440";

pub fn meta_data(instance_id: &str, hostname: &str) -> String {
    format!("instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
}

pub fn user_data(public_key: &str) -> String {
    format!(
        "#cloud-config\nssh_authorized_keys:\n  - {}\n",
        public_key.trim()
    )
}

/// Makes the key pair and the `cidata` volume in `dir` (a directory of the run's own).
pub fn make(
    runner: &dyn Runner,
    dir: &Path,
    instance_id: &str,
    hostname: &str,
) -> Result<Seed, SeedError> {
    let key = dir.join("id_ed25519");
    runner.run(
        &Cmd::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("image-builder-test@{instance_id}"))
            .arg("-f")
            .arg(&key),
    )?;
    let pub_path = dir.join("id_ed25519.pub");
    let public_key = std::fs::read_to_string(&pub_path).map_err(|source| SeedError::Io {
        what: format!("cannot read {}", pub_path.display()),
        source,
    })?;
    let files = dir.join("cidata");
    write(&files.join("meta-data"), &meta_data(instance_id, hostname))?;
    write(&files.join("user-data"), &user_data(&public_key))?;
    let volume = dir.join("cidata.img");
    runner.run(
        &Cmd::new("mkfs.vfat")
            .args(["-n", "cidata", "-C"])
            .arg(&volume)
            .arg(BLOCKS),
    )?;
    // mtools copies into the image without mounting it (no loop device, no root needed).
    runner.run(
        &Cmd::new("mcopy")
            .arg("-i")
            .arg(&volume)
            .arg(files.join("meta-data"))
            .arg(files.join("user-data"))
            .arg("::"),
    )?;
    Ok(Seed {
        volume,
        private_key: key,
        public_key: public_key.trim().to_string(),
        instance_id: instance_id.to_string(),
    })
}

fn write(path: &Path, text: &str) -> Result<(), SeedError> {
    let io = |source| SeedError::Io {
        what: format!("cannot write {}", path.display()),
        source,
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    std::fs::write(path, text).map_err(|source| SeedError::Io {
        what: format!("cannot write {}", path.display()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::{Recorder, SystemRunner};

    #[test]
    fn command_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("id_ed25519.pub"), "ssh-ed25519 AAAA k\n").unwrap();
        // The output of these tools is not read (real_volume_reads_back runs them for
        // real): every command succeeds, and the test pins every line.
        let r = Recorder::new().allow_unmatched();
        let s = make(&r, dir.path(), "iid-7", "box").unwrap();
        let d = dir.path().display();
        assert_eq!(
            r.lines(),
            vec![
                format!(
                    "ssh-keygen -q -t ed25519 -N '' -C image-builder-test@iid-7 -f {d}/id_ed25519"
                ),
                format!("mkfs.vfat -n cidata -C {d}/cidata.img 1440"),
                format!("mcopy -i {d}/cidata.img {d}/cidata/meta-data {d}/cidata/user-data ::"),
            ]
        );
        assert_eq!(s.public_key, "ssh-ed25519 AAAA k");
    }

    /// A real volume: label and files read back with mtools.
    #[test]
    fn real_volume_reads_back() {
        let have = |p: &str| {
            std::env::var_os("PATH")
                .map(|v| std::env::split_paths(&v).any(|d| d.join(p).is_file()))
                .unwrap_or(false)
        };
        let sbin = ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join("mkfs.vfat").is_file());
        if !(have("ssh-keygen") && have("mcopy") && (have("mkfs.vfat") || sbin)) {
            eprintln!("real_volume_reads_back: skipped: needs ssh-keygen, mkfs.vfat and mtools");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let r = SystemRunner::new().with_base_env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        let s = make(&r, dir.path(), "iid-42", "tbox").unwrap();
        assert!(s.public_key.starts_with("ssh-ed25519 "));
        let label = r
            .run(
                &Cmd::new("mlabel")
                    .arg("-i")
                    .arg(&s.volume)
                    .arg("-s")
                    .arg("::"),
            )
            .unwrap()
            .stdout_str();
        assert!(label.contains("cidata"), "{label}");
        let meta = r
            .run(
                &Cmd::new("mtype")
                    .arg("-i")
                    .arg(&s.volume)
                    .arg("::meta-data"),
            )
            .unwrap()
            .stdout_str();
        assert_eq!(meta, "instance-id: iid-42\nlocal-hostname: tbox\n");
        let user = r
            .run(
                &Cmd::new("mtype")
                    .arg("-i")
                    .arg(&s.volume)
                    .arg("::user-data"),
            )
            .unwrap()
            .stdout_str();
        assert!(user.starts_with("#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 "));
        assert!(user.contains(&s.public_key));
    }
}
