//! `campaignd serve` in a process of its own on a fresh sled store, for the benchmarks that
//! measure the service alone (its CPU, its memory): starting it, its process's figures, and a
//! small client of its API.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

#[path = "../../tests/api/child.rs"]
pub mod child;

use child::{spawn_with_line, Proc};

pub const BIN: &str = env!("CARGO_BIN_EXE_campaignd");

/// The environment of the service and its commands: a sled store in `dir`, loopback
/// marketplaces allowed.
pub fn service_env(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("CAMPAIGND_STORE__BACKEND", "sled".into()),
        (
            "CAMPAIGND_STORE__DATA_DIR",
            dir.join("data").display().to_string(),
        ),
        ("CAMPAIGND_SERVER__ADDR", "127.0.0.1:0".into()),
        (
            "CAMPAIGND_EGRESS__MARKETPLACES_ALLOW_PRIVATE",
            "true".into(),
        ),
        (
            "CAMPAIGND_EGRESS__MARKETPLACES_ALLOW_CUSTOM_HOSTS",
            "true".into(),
        ),
        ("CAMPAIGND_LOG", "warn".into()),
    ]
}

/// CPU time (user + system) the process `pid` has used so far.
pub fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports these in USER_HZ, which is 100 on every mainstream architecture.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// A memory figure of the process (`VmRSS`, `VmHWM`) from `/proc`, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The process's resident memory now, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS")
}

/// The process's peak resident memory, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM")
}

/// Products `{prefix}-{i}` for `i` in `range`, of two variants and two images each.
pub fn catalogue(prefix: &str, range: std::ops::Range<usize>) -> Vec<Value> {
    range
        .map(|i| {
            let sku = format!("{prefix}-{i}");
            json!({"sku": sku, "name": format!("Product {i}"), "price": 9990, "stock": 5,
                   "variants": [
                       {"sku": format!("{sku}-S"), "price": 9990, "stock": 2, "options": {"Size": "S"}},
                       {"sku": format!("{sku}-M"), "price": 9990, "stock": 3, "options": {"Size": "M"}}],
                   "images": [{"url": format!("https://img.example/{sku}/1.jpg")},
                              {"url": format!("https://img.example/{sku}/2.jpg")}]})
        })
        .collect()
}

/// `campaignd serve` in a process of its own on a fresh sled store, and a client of its API.
pub struct Service {
    _dir: tempfile::TempDir,
    pub proc: Proc,
    pub api: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Service {
    pub fn start() -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = service_env(dir.path());
        let out = Command::new(BIN)
            .args(["token", "create", "--tenant", "bench"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("token create runs");
        assert!(out.status.success(), "token create failed");
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (proc, line) = spawn_with_line(
            Command::new(BIN)
                .arg("serve")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
        );
        let api = line
            .strip_prefix("campaignd listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .trim()
            .to_string();
        Service {
            _dir: dir,
            proc,
            api,
            token,
            client: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        super::post(
            &self.client,
            format!("{}{path}", self.api),
            &self.token,
            body,
        )
        .await
    }

    /// Uploads `catalogue` and answers a new campaign named `name` on `conn` holding it.
    pub async fn campaign_of(&self, conn: &Value, name: &str, catalogue: Vec<Value>) -> Value {
        super::campaign_of(&self.client, &self.api, &self.token, conn, name, catalogue).await
    }

    /// Starts `action` on `campaign` through the API's typed client; answers its tracker id.
    pub async fn action(&self, campaign: &Value, action: &str) -> Value {
        let action = ::domain::Action::parse(action).expect("an action");
        let campaign = campaign.as_u64().expect("a campaign id");
        let options = ::api::input::ActionInput::default();
        let started = ::client::Client::new(&self.api, &self.token)
            .start(campaign, action, &options)
            .await
            .expect("the action starts");
        Value::from(started.tracker_id)
    }

    pub async fn tracker(&self, tracker: &Value) -> Value {
        super::tracker(&self.client, &self.api, &self.token, tracker).await
    }
}
