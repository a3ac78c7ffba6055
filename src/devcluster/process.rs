//! Child processes that die with us: each is started under a small shell watchdog that kills it when
//! the process that started it goes away (a finished or panicking test binary included), so nothing
//! is left running and nothing is ever killed by name.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The watchdog: starts `"$@"`, forwards TERM/INT to it, and kills it once `$1` (our pid) is gone.
const WATCHDOG: &str = r#"
owner=$1; shift
"$@" &
child=$!
trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT
while kill -0 "$owner" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
if kill -0 "$child" 2>/dev/null; then
  kill -TERM "$child" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$child" 2>/dev/null
fi
wait "$child"
"#;

/// A running child under its watchdog.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Supervised {
    /// Starts `program args…` with stdout and stderr appended to `log`.
    ///
    /// # Errors
    /// When the log cannot be opened or the shell cannot start.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> std::io::Result<Self> {
        let out = File::options().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        tracing::debug!(name, pid = child.id(), "started");
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// The watchdog's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    #[must_use]
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// The last `lines` lines of the log, for error messages.
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Stops the child (TERM through the watchdog, then KILL) and waits for it.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..40 {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        tracing::warn!(name = %self.name, "did not stop within 10 s; killing");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a file (empty when unreadable).
#[must_use]
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Component flag dumps (`FLAG: --x=…`) say nothing about why something failed.
    let all: Vec<&str> = text.lines().filter(|l| !l.contains("] FLAG: ")).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Removes `dir` once our process is gone (a watchdog of its own), so data dirs do not pile up when
/// a test binary exits without running destructors.
///
/// # Errors
/// When the shell cannot start.
pub fn remove_when_gone(dir: &Path) -> std::io::Result<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; sleep 2; rm -rf "$2""#)
        .arg("cleanup")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_a_supervised_child_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Supervised::start(
            "sleep",
            Path::new("sleep"),
            &["30".into()],
            dir.path().join("log"),
        )
        .unwrap();
        assert!(p.exited().is_none());
        p.stop();
        assert!(p.exited().is_some());
    }

    #[test]
    fn log_tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&dir.path().join("missing"), 2), "");
    }
}
