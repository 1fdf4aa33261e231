//! Where log lines go: standard error (journald under systemd), or the file named by
//! `CAMPAIGND_LOG_FILE`, appended to and reopened on `SIGHUP` so that logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A log file that can be reopened at its path (after a rotation moved the old one).
#[derive(Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

fn open(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

impl LogFile {
    pub fn open(path: &Path) -> std::io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(open(path)?)),
        })
    }

    /// Opens the path again; lines written from now on go to the new file.
    pub fn reopen(&self) -> std::io::Result<()> {
        let fresh = open(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One line's writer: holds the file while the line is written.
pub struct LineWriter<'a>(std::sync::MutexGuard<'a, File>);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogFile {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self.file.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The log file the process writes to, when there is one (set once at start).
static FILE: std::sync::OnceLock<LogFile> = std::sync::OnceLock::new();

/// Sets up logging: `CAMPAIGND_LOG` filters (info by default); `CAMPAIGND_LOG_FILE` names a
/// file to append to instead of standard error; `CAMPAIGND_LOG_FORMAT=json` writes one JSON
/// object per line, the ids (tenant, campaign, tracker, connection) as fields.
pub fn init() -> std::io::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAMPAIGND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("CAMPAIGND_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (
        std::env::var_os("CAMPAIGND_LOG_FILE").filter(|p| !p.is_empty()),
        json,
    ) {
        (Some(path), json) => {
            let file = LogFile::open(Path::new(&path))?;
            let _ = FILE.set(file.clone());
            let builder = builder.with_ansi(false).with_writer(file);
            if json {
                builder.json().init();
            } else {
                builder.init();
            }
        }
        (None, true) => builder.json().init(),
        (None, false) => builder.init(),
    }
    Ok(())
}

/// Reopens the log file, if logs go to one (on SIGHUP).
pub fn reopen() {
    match FILE.get() {
        Some(file) => match file.reopen() {
            Ok(()) => tracing::info!(path = %file.path().display(), "log file reopened"),
            Err(error) => eprintln!("could not reopen {}: {error}", file.path().display()),
        },
        None => tracing::info!("SIGHUP: logs go to standard error; nothing to reopen"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_log_file_takes_the_lines_after_a_rotation() {
        use tracing_subscriber::fmt::MakeWriter;
        let dir = tempfile::tempdir().expect("a dir");
        let path = dir.path().join("campaignd.log");
        let log = LogFile::open(&path).expect("opens");
        log.make_writer().write_all(b"before\n").expect("written");
        std::fs::rename(&path, dir.path().join("campaignd.log.1")).expect("rotated");
        log.reopen().expect("reopens");
        log.make_writer().write_all(b"after\n").expect("written");
        assert_eq!(std::fs::read_to_string(&path).expect("new file"), "after\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("campaignd.log.1")).expect("old file"),
            "before\n"
        );
    }
}
