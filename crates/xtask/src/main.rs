//! The project's commands, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! - `test [ARGS...]`: the whole test suite on a fresh machine. The black-box tests need three
//!   programs besides the Rust toolchain: PostgreSQL's server programs (each black-box test runs
//!   on a private PostgreSQL server too), a headless chromium (the dashboard test) and
//!   schemathesis (the API's fuzzing test). Whatever is missing is installed (Debian's
//!   `postgresql` and `chromium` with apt-get, schemathesis from PyPI with pip); where that
//!   cannot be done, the command says exactly what is missing and how to provide it, and stops
//!   before any test runs. Then it runs `cargo test --locked ARGS...`.
//!
//! Each program may be named instead by the variable its test reads: `PG_BIN` (the directory of
//! `initdb` and `postgres`), `CHROMIUM` and `SCHEMATHESIS`.
//!
//! Its tests are `tidy`: the project's layout rules, checked on its files by `cargo test`.

use std::path::{Path, PathBuf};

#[cfg(test)]
mod tidy;
use std::process::{Command, ExitCode};

/// schemathesis's version, pinned: its checks and their findings change between releases.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("test") => test(args.collect()),
        _ => {
            eprintln!("usage: cargo xtask test [cargo test arguments...]");
            ExitCode::from(2)
        }
    }
}

/// One program the tests need: how to tell it is here, and how to get it.
struct Need {
    what: &'static str,
    /// The variable that names it instead.
    variable: &'static str,
    found: fn() -> Option<PathBuf>,
    /// The Debian package that provides it, or the PyPI requirement.
    source: Source,
}

#[derive(Clone, Copy)]
enum Source {
    Debian(&'static str),
    PyPi(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Debian(p) => write!(f, "apt-get install {p}"),
            Source::PyPi(p) => write!(f, "python3 -m pip install {p}"),
        }
    }
}

const NEEDS: [Need; 3] = [
    Need {
        what: "PostgreSQL's server programs",
        variable: "PG_BIN",
        found: postgres,
        source: Source::Debian("postgresql"),
    },
    Need {
        what: "a headless chromium",
        variable: "CHROMIUM",
        found: chromium,
        source: Source::Debian("chromium"),
    },
    Need {
        what: "schemathesis",
        variable: "SCHEMATHESIS",
        found: schemathesis,
        source: Source::PyPi(SCHEMATHESIS),
    },
];

fn test(args: Vec<String>) -> ExitCode {
    let missing: Vec<&Need> = NEEDS
        .iter()
        .filter(|n| std::env::var_os(n.variable).is_none() && (n.found)().is_none())
        .collect();
    let debian: Vec<&str> = missing
        .iter()
        .filter_map(|n| match n.source {
            Source::Debian(p) => Some(p),
            Source::PyPi(_) => None,
        })
        .collect();
    if !debian.is_empty() {
        println!(
            "xtask: installing Debian's {} for the tests",
            debian.join(" ")
        );
        let sudo = if is_root() { None } else { Some("sudo") };
        let ok = run_as(sudo, "apt-get", &["update", "-q"])
            && run_as(
                sudo,
                "env",
                &[
                    &[
                        "DEBIAN_FRONTEND=noninteractive",
                        "apt-get",
                        "install",
                        "-y",
                        "-q",
                    ][..],
                    &debian,
                ]
                .concat(),
            );
        if !ok {
            eprintln!("xtask: apt-get could not install {}", debian.join(" "));
        }
    }
    if missing.iter().any(|n| matches!(n.source, Source::PyPi(_))) {
        println!("xtask: installing {SCHEMATHESIS} from PyPI for the tests");
        let ok = run_as(
            None,
            "python3",
            &[
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                SCHEMATHESIS,
            ],
        );
        if !ok {
            eprintln!("xtask: pip could not install {SCHEMATHESIS}");
        }
    }
    let still: Vec<&&Need> = missing.iter().filter(|n| (n.found)().is_none()).collect();
    if !still.is_empty() {
        eprintln!("xtask: the tests cannot run; missing:");
        for n in still {
            eprintln!(
                "  - {}: `{}`, or set {} to where it is",
                n.what, n.source, n.variable
            );
        }
        return ExitCode::FAILURE;
    }
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["test", "--locked"]).args(&args);
    // schemathesis installed by pip may sit in the user's scripts directory, off the PATH.
    if std::env::var_os("SCHEMATHESIS").is_none() && on_path("schemathesis").is_none() {
        if let Some(found) = schemathesis() {
            cargo.env("SCHEMATHESIS", found);
        }
    }
    println!("xtask: cargo test --locked {}", args.join(" "));
    match cargo.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: could not run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command (under `sudo` if given), saying whether it succeeded.
fn run_as(sudo: Option<&str>, program: &str, args: &[&str]) -> bool {
    let mut command = match sudo {
        Some(s) => {
            let mut c = Command::new(s);
            c.arg(program);
            c
        }
        None => Command::new(program),
    };
    command.args(args).status().is_ok_and(|s| s.success())
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Debian's PostgreSQL server programs: `/usr/lib/postgresql/<version>/bin/postgres`.
fn postgres() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .find(|bin| bin.join("postgres").is_file())
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(on_path)
}

/// schemathesis on the PATH, or where pip puts scripts (`python3 -m sysconfig`'s `scripts`).
fn schemathesis() -> Option<PathBuf> {
    on_path("schemathesis").or_else(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .output()
            .ok()?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let found = Path::new(&dir).join("schemathesis");
        found.is_file().then_some(found)
    })
}
