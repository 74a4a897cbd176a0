//! Subprocesses (yt-dlp, ffmpeg) on tokio: argv only (never a shell), a deadline, killed when
//! dropped, and the tail of stderr kept for the error message.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// How much of stderr an error carries.
const STDERR_TAIL: usize = 1_500;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{program} is not installed or not executable ({source}); install it or set its path in the configuration")]
    NotFound { program: String, source: std::io::Error },
    #[error("{program} timed out after {seconds} s")]
    TimedOut { program: String, seconds: u64 },
    #[error("{program} exited with {status}: {stderr}")]
    Failed { program: String, status: String, stderr: String },
}

pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs `program args…` to completion within `timeout`.
pub async fn run<I, S>(program: &Path, args: I, timeout: Duration) -> Result<Output, ProcessError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let name = program.display().to_string();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProcessError::NotFound { program: name.clone(), source })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|source| ProcessError::NotFound { program: name.clone(), source })?,
        Err(_) => return Err(ProcessError::TimedOut { program: name, seconds: timeout.as_secs() }),
    };
    let stderr = tail(&String::from_utf8_lossy(&output.stderr), STDERR_TAIL);
    if !output.status.success() {
        return Err(ProcessError::Failed { program: name, status: output.status.to_string(), stderr });
    }
    Ok(Output { stdout: output.stdout, stderr })
}

/// Where to find a tool configured as `program`: a path is used as given; a bare name is looked up
/// on `PATH`, then in `./.venv/bin` (where `scripts/setup.sh` installs yt-dlp).
pub fn resolve(program: &Path) -> std::path::PathBuf {
    if program.components().count() != 1 {
        return program.to_owned();
    }
    let venv = Path::new(".venv/bin").join(program);
    if on_path(program).is_none() && venv.is_file() { venv } else { program.to_owned() }
}

/// Where `program` (a bare name) is on `PATH`, if it is.
pub fn on_path(program: &Path) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// The last `max` bytes of `text` (on a char boundary), trimmed.
pub fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_missing_programs() {
        let err = run(Path::new("/no/such/tool"), ["x"], Duration::from_secs(5)).await.err().unwrap();
        assert!(matches!(err, ProcessError::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn captures_stderr_of_failures() {
        let err = run(Path::new("sh"), ["-c", "echo boom >&2; exit 3"], Duration::from_secs(5)).await.err().unwrap();
        match err {
            ProcessError::Failed { stderr, .. } => assert_eq!(stderr, "boom"),
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn enforces_the_deadline() {
        let err = run(Path::new("sleep"), ["5"], Duration::from_millis(100)).await.err().unwrap();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");
    }

    #[test]
    fn tools_are_resolved_on_path_or_as_given() {
        assert_eq!(resolve(Path::new("/opt/x/yt-dlp")), Path::new("/opt/x/yt-dlp"));
        assert_eq!(resolve(Path::new("sh")), Path::new("sh"));
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail("ééé", 3), "…é");
    }
}
