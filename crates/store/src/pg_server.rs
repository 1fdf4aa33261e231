//! A private PostgreSQL server for the tests (of this crate, and the black-box suite through the
//! `test-support` feature): `initdb` in a temporary directory, `postgres` on a
//! free loopback port with trust authentication, started once per test binary and shared, with
//! a fresh database per test. Run as `nobody` when the tests run as root (PostgreSQL refuses
//! root). The server dies with the test process (a parent-death signal), and its directory is
//! removed at exit. It needs Debian's `postgresql` package, nothing else: no system service, no
//! password. `PG_BIN` may name the directory of `initdb` and `postgres`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The uid and gid the server runs as when we are root: `nobody`.
const NOBODY: u32 = 65534;

/// Where Debian installs the server's programs: the newest version there, unless `PG_BIN`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server found under /usr/lib/postgresql: install Debian's postgresql \
             (apt-get install postgresql; .ci/run does) or set PG_BIN"
        ),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs as `nobody` when we are root, and receives `death` when the thread that
/// spawned it ends (give 0 for none).
fn as_server_user(mut command: Command, death: libc::c_int) -> Command {
    let root = is_root();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            if root && (libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0) {
                return Err(std::io::Error::last_os_error());
            }
            // After the change of user, which would clear it.
            if death != 0 && libc::prctl(libc::PR_SET_PDEATHSIG, death) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A PostgreSQL server of the tests' own.
pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    child: Mutex<Option<Child>>,
}

impl PgServer {
    /// Creates a cluster in a new temporary directory and starts it.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "campaignd-pg-{}-{}",
            std::process::id(),
            NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the server");
        if is_root() {
            let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
                .expect("a path without NUL");
            // SAFETY: a valid NUL-terminated path; the result is checked.
            let changed = unsafe { libc::chown(path.as_ptr(), NOBODY, NOBODY) };
            assert_eq!(changed, 0, "could not give {} to nobody", dir.display());
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .env("LC_ALL", "C")
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = as_server_user(initdb, 0).output().expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = PgServer {
            port: free_port(),
            dir,
            bin,
            child: Mutex::new(None),
        };
        server.run();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the server on its data directory and waits until it accepts connections.
    pub fn run(&self) {
        let mut slot = self.child.lock().unwrap();
        assert!(slot.is_none(), "the server is running already");
        let log = std::fs::File::create(self.dir.join("server.log")).expect("a log file");
        let mut postgres = Command::new(self.bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            // No fsync (the machine does not crash under the tests), but commits do reach the
            // WAL before they return, so a test that kills the server loses nothing committed.
            .args(["-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
            .args(["-c", "shared_buffers=64MB"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log);
        let child = spawner().spawn(as_server_user(postgres, libc::SIGQUIT));
        *slot = Some(child);
        drop(slot);
        self.wait_ready();
    }

    /// Stops the server at once, as a crash or an operator's immediate shutdown would: every
    /// connection is cut.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // SAFETY: signalling a child we spawned and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGQUIT) };
            let _ = child.wait();
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("PostgreSQL did not start in 60 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new, empty database on this server, and its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(&name)
            .output()
            .expect("createdb runs");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Removes the server's directory once it stopped.
    fn remove(&self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.remove();
    }
}

static NEXT_SERVER: AtomicU32 = AtomicU32::new(0);
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

/// Spawns server processes from one thread that lives as long as the test process, since a
/// parent-death signal fires when the spawning *thread* ends, and test threads end early.
struct Spawner {
    tx: Mutex<std::sync::mpsc::Sender<(Command, std::sync::mpsc::Sender<Child>)>>,
}

impl Spawner {
    fn spawn(&self, command: Command) -> Child {
        let (reply, answer) = std::sync::mpsc::channel();
        self.tx
            .lock()
            .unwrap()
            .send((command, reply))
            .expect("the spawner thread lives");
        answer.recv().expect("the server process starts")
    }
}

fn spawner() -> &'static Spawner {
    static SPAWNER: OnceLock<Spawner> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<(Command, std::sync::mpsc::Sender<Child>)>();
        std::thread::spawn(move || {
            // The sender is in a static, so this loop ends only with the process.
            for (mut command, reply) in rx {
                let child = command.spawn().expect("the server process starts");
                let _ = reply.send(child);
            }
        });
        Spawner { tx: Mutex::new(tx) }
    })
}

/// The server shared by every test of this binary, started on first use and removed when the
/// test process exits.
pub fn shared() -> &'static PgServer {
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        extern "C" fn remove_shared() {
            if let Some(server) = SHARED.get() {
                server.remove();
            }
        }
        let server = PgServer::start();
        // SAFETY: registering a plain function to run at exit.
        unsafe { libc::atexit(remove_shared) };
        server
    })
}
