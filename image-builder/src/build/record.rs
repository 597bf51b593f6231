//! What a build leaves beside its outputs: `SHA256SUMS` for every output file, and a JSON
//! record of the build (inputs and their hashes, cache key, step timings, outputs).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cache::{hex, KeyInputs};
use super::error::BuildError;

/// Timing of one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    pub index: usize,
    pub t: String,
    pub location: String,
    pub seconds: f64,
    pub skipped: bool,
}

/// The build record written to `DATASET/output/GROUP-OUTPUT.build.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub group: String,
    pub name: String,
    pub output_name: String,
    pub host: String,
    pub started: u64,
    pub seconds: f64,
    pub cache: String,
    pub key: Option<String>,
    pub inputs: Option<KeyInputs>,
    pub steps: Vec<StepTiming>,
    pub outputs: Vec<String>,
}

impl Record {
    pub fn write(&self, output_dir: &Path) -> Result<PathBuf, BuildError> {
        let path = output_dir.join(format!("{}-{}.build.json", self.group, self.output_name));
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        write_atomic(&path, &bytes)?;
        Ok(path)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SumCache {
    /// name -> (size, mtime in ns, sha256)
    files: BTreeMap<String, (u64, i128, String)>,
}

/// Builds running side by side (a matrix) share the output directory's sums: one writer
/// at a time.
static SUMS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Records the SHA-256 of files of `output_dir` computed while they were written, so
/// [`update_sums`] does not read them again (as long as their size and mtime stay).
pub fn remember_sums(
    output_dir: &Path,
    state_dir: &Path,
    sums: &[(String, String)],
) -> Result<(), BuildError> {
    let _one_at_a_time = SUMS.lock().unwrap_or_else(|e| e.into_inner());
    let cache_path = state_dir.join("sums-cache.json");
    let mut cache: SumCache = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for (name, sum) in sums {
        let path = output_dir.join(name);
        let meta = std::fs::metadata(&path).map_err(|e| BuildError::io(&path, e))?;
        cache
            .files
            .insert(name.clone(), (meta.len(), mtime_ns(&meta), sum.clone()));
    }
    std::fs::create_dir_all(state_dir).map_err(|e| BuildError::io(state_dir, e))?;
    write_atomic(&cache_path, &serde_json::to_vec(&cache).unwrap_or_default())
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
}

/// Rewrites `SHA256SUMS` for the regular files in `output_dir` (hidden files, the sums file
/// and build records excluded). Unchanged files (same size and mtime) are not read again.
pub fn update_sums(output_dir: &Path, state_dir: &Path) -> Result<(), BuildError> {
    // One rewrite at a time, or a build finishing second could drop the other's file
    // from the list.
    let _one_at_a_time = SUMS.lock().unwrap_or_else(|e| e.into_inner());
    let cache_path = state_dir.join("sums-cache.json");
    let old: SumCache = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut new = SumCache::default();
    let mut names: Vec<String> = std::fs::read_dir(output_dir)
        .map_err(|e| BuildError::io(output_dir, e))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !n.starts_with('.')
                && n != "SHA256SUMS"
                && !n.ends_with(".build.json")
                && !n.ends_with(".partial")
        })
        .collect();
    names.sort();
    // Size and mtime of each, and the cached sum when they still match.
    let mut entries = Vec::new();
    for n in names {
        let path = output_dir.join(&n);
        let meta = std::fs::metadata(&path).map_err(|e| BuildError::io(&path, e))?;
        let mtime = mtime_ns(&meta);
        let cached = match old.files.get(&n) {
            Some((size, m, sum)) if *size == meta.len() && *m == mtime => Some(sum.clone()),
            _ => None,
        };
        entries.push((n, path, meta.len(), mtime, cached));
    }
    // The others are hashed side by side (an image and the archives beside it).
    let todo: Vec<usize> = (0..entries.len())
        .filter(|i| entries[*i].4.is_none())
        .collect();
    let width = std::thread::available_parallelism().map_or(1, |n| n.get());
    for chunk in todo.chunks(width) {
        let sums: Vec<Result<String, BuildError>> = std::thread::scope(|s| {
            let hs: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let (n, path) = (&entries[i].0, &entries[i].1);
                    s.spawn(move || {
                        let t = std::time::Instant::now();
                        let sum = sha256_file(path)?;
                        tracing::debug!("sha256 of {n} in {:.3} s", t.elapsed().as_secs_f64());
                        Ok(sum)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or(Err(BuildError::ChecksumThread)))
                .collect()
        });
        for (&i, sum) in chunk.iter().zip(sums) {
            entries[i].4 = Some(sum?);
        }
    }
    let mut text = String::new();
    for (n, _, size, mtime, sum) in entries {
        let sum = sum.unwrap_or_default();
        text.push_str(&format!("{sum}  {n}\n"));
        new.files.insert(n, (size, mtime, sum));
    }
    write_atomic(&output_dir.join("SHA256SUMS"), text.as_bytes())?;
    std::fs::create_dir_all(state_dir).map_err(|e| BuildError::io(state_dir, e))?;
    write_atomic(&cache_path, &serde_json::to_vec(&new).unwrap_or_default())
}

pub fn sha256_file(path: &Path) -> Result<String, BuildError> {
    let mut f = std::fs::File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| BuildError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    // A name of this writer's own: with a shared one, two concurrent writers rename the
    // same temporary file and the second fails.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = path.with_file_name(format!(
        ".{}.{}-{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| BuildError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_sums_are_used_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::write(out.join("x.raw"), b"image").unwrap();
        let state = out.join(".image-builder");
        // A sum remembered from the copy is what SHA256SUMS lists, unread.
        remember_sums(out, &state, &[("x.raw".into(), "f".repeat(64))]).unwrap();
        update_sums(out, &state).unwrap();
        let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
        assert_eq!(sums, format!("{}  x.raw\n", "f".repeat(64)));
        // Changed afterwards: hashed again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(out.join("x.raw"), b"other image").unwrap();
        update_sums(out, &state).unwrap();
        let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
        assert!(
            sums.starts_with(&sha256_file(&out.join("x.raw")).unwrap()),
            "{sums}"
        );
        assert!(remember_sums(out, &state, &[("missing".into(), "0".into())]).is_err());
    }

    #[test]
    fn sums_match_sha256sum_and_skip_records_and_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::write(out.join("b.tar.gz"), b"bbb").unwrap();
        std::fs::write(out.join("a.raw"), vec![7u8; 100_000]).unwrap();
        std::fs::write(out.join("g-n.build.json"), b"{}").unwrap();
        std::fs::create_dir(out.join(".image-builder")).unwrap();
        update_sums(out, &out.join(".image-builder")).unwrap();
        let got = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
        let want = std::process::Command::new("sha256sum")
            .args(["a.raw", "b.tar.gz"])
            .current_dir(out)
            .output()
            .unwrap();
        assert_eq!(got, String::from_utf8(want.stdout).unwrap());
        // A changed file is hashed again even though its name is cached.
        std::fs::write(out.join("b.tar.gz"), b"changed").unwrap();
        update_sums(out, &out.join(".image-builder")).unwrap();
        assert!(std::fs::read_to_string(out.join("SHA256SUMS"))
            .unwrap()
            .contains(&sha256_file(&out.join("b.tar.gz")).unwrap()));
    }
}
