//! `tubesum models fetch NAME`: downloads a ggml Whisper model from the usual whisper.cpp model
//! location (or `--base-url`), streaming to a temporary file, verifying the SHA-1 published in
//! whisper.cpp's model table, and only then renaming it into place.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha1::{Digest, Sha1};
use tokio::io::AsyncWriteExt;

pub const DEFAULT_BASE_URL: &str = "https://huggingface.co/ggerganov/whisper.cpp/resolve/main";

/// (name, SHA-1 of `ggml-{name}.bin`), from whisper.cpp's models/README.md.
pub const KNOWN_MODELS: &[(&str, &str)] = &[
    ("tiny", "bd577a113a864445d4c299885e0cb97d4ba92b5f"),
    ("tiny.en", "c78c86eb1a8faa21b369bcd33207cc90d64ae9df"),
    ("base", "465707469ff3a37a2b9b8d8f89f2f99de7299dac"),
    ("base.en", "137c40403d78fd54d454da0f9bd998f78703390c"),
    ("small", "55356645c2b361a969dfd0ef2c5a50d530afd8d5"),
    ("small.en", "db8a495a91d927739e50b3fc1cc4c6b8f6c2d022"),
    ("medium", "fd9727b6e1217c2f614f9b698455c4ffd82463b4"),
    ("medium.en", "8c30f0e44ce9560643ebd10bbe50cd20eafd3723"),
    ("large-v1", "b1caaf735c4cc1429223d5a74f0f4d0b9b59a299"),
    ("large-v2", "0f4c8e34f21cf1a914c59d8b3ce882345ad349d6"),
    ("large-v3", "ad82bf6a9043ceed055076d0fd39f5f186ff8062"),
];

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("unknown model {0:?}; known models: {1}")]
    UnknownModel(String, String),
    #[error("downloading {url}: {detail}")]
    Download { url: String, detail: String },
    #[error("checksum mismatch for {url}: expected sha1 {expected}, got {actual}; nothing was written")]
    Checksum { url: String, expected: String, actual: String },
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The SHA-1 of a known model.
pub fn expected_sha1(name: &str) -> Result<&'static str, FetchError> {
    KNOWN_MODELS.iter().find(|(n, _)| *n == name).map(|(_, sha)| *sha).ok_or_else(|| {
        FetchError::UnknownModel(name.into(), KNOWN_MODELS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
    })
}

/// Fetches `ggml-{name}.bin` into `dir`; returns its path.
pub async fn fetch(name: &str, dir: &Path, base_url: &str) -> Result<PathBuf, FetchError> {
    let expected = expected_sha1(name)?;
    let file = format!("ggml-{name}.bin");
    let url = format!("{}/{file}", base_url.trim_end_matches('/'));
    let out = dir.join(&file);
    download_verified(&url, expected, &out).await?;
    Ok(out)
}

/// Streams `url` to `out` if its SHA-1 is `expected`; `out` is untouched otherwise.
pub async fn download_verified(url: &str, expected: &str, out: &Path) -> Result<(), FetchError> {
    let err = |detail: String| FetchError::Download { url: url.into(), detail };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    if let Some(dir) = out.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    }
    let response = reqwest::get(url).await.map_err(|e| err(e.to_string()))?;
    if !response.status().is_success() {
        return Err(err(format!("server answered {}", response.status())));
    }
    let total = response.content_length();
    let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let tmp = out.with_extension("part");
    let mut file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
    let mut hasher = Sha1::new();
    let mut body = response.bytes_stream();
    let result = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| err(e.to_string()))?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io(&tmp))?;
            bar.inc(chunk.len() as u64);
        }
        file.flush().await.map_err(io(&tmp))?;
        let actual = hex::encode(hasher.finalize());
        if actual != expected {
            return Err(FetchError::Checksum { url: url.into(), expected: expected.into(), actual });
        }
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    match result {
        Ok(()) => tokio::fs::rename(&tmp, out).await.map_err(io(out)),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;

    async fn serve(body: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/ggml-tiny.en.bin", get(move || async move { body }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[test]
    fn known_models_have_checksums() {
        assert_eq!(expected_sha1("tiny.en").unwrap(), "c78c86eb1a8faa21b369bcd33207cc90d64ae9df");
        let err = expected_sha1("huge").unwrap_err().to_string();
        assert!(err.contains("tiny.en"), "{err}");
    }

    #[tokio::test]
    async fn a_checksum_mismatch_writes_nothing() {
        let base = serve(b"definitely not a model").await;
        let dir = tempfile::tempdir().unwrap();
        let err = fetch("tiny.en", dir.path(), &base).await.unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file left behind");
    }

    #[tokio::test]
    async fn a_verified_download_lands_in_place() {
        let body: &'static [u8] = b"model bytes";
        let base = serve(body).await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m/ggml-tiny.en.bin");
        let sha = hex::encode(Sha1::digest(body));
        download_verified(&format!("{base}/ggml-tiny.en.bin"), &sha, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), body);
        let missing = download_verified(&format!("{base}/nope"), &sha, &dir.path().join("x")).await.unwrap_err();
        assert!(missing.to_string().contains("404"), "{missing}");
    }
}
