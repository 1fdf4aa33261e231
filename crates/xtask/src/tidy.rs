//! The tidy tests: the project's layout rules, checked on its files by `cargo test` (as
//! rust-analyzer's `xtask/src/tidy.rs` does), so that a rule broken fails the suite instead of
//! waiting for a reviewer. Each rule says why it exists. A rule that still has offenders lists
//! them by name, and fails as well when one of them is mended and stays listed, so the lists only
//! shrink.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The workspace's root: two levels above this crate.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The workspace's crates and the crates each may depend on: dependencies point one way
/// (ARCHITECTURE.md, "Crates"), so that an upward `use` does not compile, and siblings (`store`
/// and `net`) stay apart. `xtask` stands apart from the service.
const LAYERS: [(&str, &[&str]); 8] = [
    ("domain", &[]),
    ("metrics", &[]),
    ("store", &["domain"]),
    ("net", &["domain"]),
    ("marketplaces", &["domain", "metrics", "net", "store"]),
    (
        "engine",
        &["domain", "metrics", "net", "store", "marketplaces"],
    ),
    (
        "api",
        &[
            "domain",
            "metrics",
            "net",
            "store",
            "marketplaces",
            "engine",
        ],
    ),
    ("client", &["domain", "api"]),
];

/// The crate directories: `crates/<name>`, and the root package (`campaignd`, in `src`).
fn crates() -> Vec<(String, PathBuf)> {
    let mut all: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("crates"))
        .expect("the crates directory")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    all.sort();
    all.push(("campaignd".to_string(), root()));
    all
}

/// The names of the workspace crates a manifest's `[dependencies]` names.
fn our_dependencies(manifest: &str) -> Vec<String> {
    let mut in_dependencies = false;
    let mut found = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if !in_dependencies {
            continue;
        }
        let name = line.split('=').next().unwrap_or("").trim();
        if LAYERS.iter().any(|(l, _)| *l == name) {
            found.push(name.to_string());
        }
    }
    found
}

#[test]
fn every_crate_is_placed_in_the_layers_and_depends_only_on_those_below() {
    for (name, dir) in crates() {
        let deps = our_dependencies(&read(&dir.join("Cargo.toml")));
        if name == "campaignd" {
            continue; // The binary: it wires every crate.
        }
        if name == "xtask" {
            assert!(
                deps.is_empty(),
                "xtask is not part of the service: {deps:?}"
            );
            continue;
        }
        let (_, allowed) = LAYERS
            .iter()
            .find(|(l, _)| *l == name)
            .unwrap_or_else(|| panic!("crates/{name} has no place in tidy's LAYERS"));
        for d in deps {
            assert!(
                allowed.contains(&d.as_str()),
                "crates/{name} depends on {d}, which is not below it (it may use {allowed:?})"
            );
        }
    }
}

#[test]
fn every_source_file_opens_with_a_doc_comment() {
    let mut missing = Vec::new();
    for dir in ["src", "crates", "tests", "benches"] {
        for file in rust_files(&root().join(dir)) {
            if !read(&file).starts_with("//!") {
                missing.push(shown(&file));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a `//!` opening: {missing:#?}"
    );
}

/// The modules a crate root declares (`mod x;` and `pub mod x;`, not the tests').
fn declared_modules(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut after_cfg_test = false;
    for line in text.lines() {
        let t = line.trim();
        if t == "#[cfg(test)]" {
            after_cfg_test = true;
            continue;
        }
        let declared = t
            .strip_prefix("pub mod ")
            .or_else(|| t.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'));
        if let Some(name) = declared {
            if !after_cfg_test {
                found.push(name.to_string());
            }
        }
        if !t.starts_with("#[") {
            after_cfg_test = false;
        }
    }
    found
}

#[test]
fn every_crate_root_opens_with_its_layout() {
    for (name, dir) in crates() {
        let roots = ["src/lib.rs", "src/main.rs"].map(|r| dir.join(r));
        for root_file in roots.iter().filter(|p| p.is_file()) {
            let text = read(root_file);
            let doc: String = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join("\n");
            for module in declared_modules(&text) {
                assert!(
                    doc.contains(&format!("`{module}`")) || doc.contains(&format!("[`{module}`]")),
                    "{name}: {} declares `{module}` but its opening does not name it",
                    shown(root_file)
                );
            }
        }
    }
}

/// ARCHITECTURE.md in rust-analyzer's form: a section per crate (`### \`crates/<name>\``, and
/// one for `src`), each ending in its invariants.
#[test]
fn architecture_has_a_section_per_crate_ending_in_its_invariants() {
    let architecture = read(&root().join("ARCHITECTURE.md"));
    for (name, _) in crates() {
        let heading = match name.as_str() {
            "campaignd" => "\n### `src`".to_string(),
            _ => format!("\n### `crates/{name}`"),
        };
        let start = architecture
            .find(&heading)
            .unwrap_or_else(|| panic!("ARCHITECTURE.md has no section {heading:?}"));
        let rest = &architecture[start + heading.len()..];
        let end = [rest.find("\n### "), rest.find("\n## ")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        let section = &rest[..end];
        let invariants = section
            .rfind("\n**Invariants.**\n")
            .unwrap_or_else(|| panic!("{heading:?} does not end in its invariants"));
        assert!(
            !section[invariants..].contains("\n#### "),
            "{heading:?}: its invariants come last"
        );
    }
}

/// Functions still over the bound, to be split: (file, function). None now; a function that
/// must stay long is listed here with the reason.
const LONG_FUNCTIONS: [(&str, &str); 0] = [];

/// A function's length in lines, from its `fn` line to its closing brace, for every function
/// of `text` (by name; the longest of a name).
fn function_lengths(text: &str) -> BTreeMap<String, usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut lengths = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
        let t = t.strip_prefix("async ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let indent = line.len() - line.trim_start().len();
        // The signature ends at the first line ending in `{` (a body follows) or `;` (a
        // declaration, no body); rustfmt closes the body at the `fn`'s indentation.
        let Some(open) = lines[i..]
            .iter()
            .position(|l| l.trim_end().ends_with('{') || l.trim_end().ends_with(';'))
        else {
            continue;
        };
        if lines[i + open].trim_end().ends_with(';') {
            continue;
        }
        let Some(end) = lines[i + open..].iter().position(|l| {
            l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
        }) else {
            continue;
        };
        let length = open + end + 1;
        let longest = lengths.entry(name).or_insert(0);
        *longest = (*longest).max(length);
    }
    lengths
}

#[test]
fn no_function_outside_the_simulators_is_over_150_lines() {
    let mut over = Vec::new();
    for dir in ["src", "crates"] {
        for file in rust_files(&root().join(dir)) {
            let path = shown(&file);
            let simulator = path.ends_with("/sim.rs") || path.contains("/sim/");
            if simulator || path.starts_with("crates/xtask") {
                continue;
            }
            for (name, length) in function_lengths(&read(&file)) {
                if length > 150 {
                    over.push((path.clone(), name, length));
                }
            }
        }
    }
    for (path, name, length) in &over {
        assert!(
            LONG_FUNCTIONS.contains(&(path.as_str(), name.as_str())),
            "{path}: fn {name} is {length} lines; split it (at most 150)"
        );
    }
    for (path, name) in LONG_FUNCTIONS {
        assert!(
            over.iter().any(|(p, n, _)| p == path && n == name),
            "{path}: fn {name} is no longer over 150 lines; take it off LONG_FUNCTIONS"
        );
    }
}

/// The crates that may speak JSON, and why: the API (its answers) and its client, the
/// marketplaces (their wire protocols and simulators) and the store (a backup's manifest file). The engine hands typed
/// values to the API (a dry run's `Plan`) and takes the webhook body's form from it.
const JSON_CRATES: [&str; 4] = ["api", "marketplaces", "store", "client"];

#[test]
fn json_is_spoken_only_at_the_edges() {
    for (name, dir) in crates() {
        if name == "campaignd" || name == "xtask" {
            continue;
        }
        let manifest = read(&dir.join("Cargo.toml"));
        let dependencies = manifest.split("[dev-dependencies]").next().unwrap_or("");
        let speaks = dependencies
            .lines()
            .any(|l| l.trim_start().starts_with("serde_json"));
        assert_eq!(
            speaks,
            JSON_CRATES.contains(&name.as_str()),
            "crates/{name}: JSON belongs to {JSON_CRATES:?} only (and each of them uses it)"
        );
    }
}

/// No code of the crates or the binary is kept that nothing uses: an answer's schema that is
/// never built (the document's old `mod schema`) could say otherwise than what is sent, so every
/// schema is a type the handlers send, and `dead_code` is never allowed outside tests and
/// benchmarks.
#[test]
fn nothing_is_kept_unused() {
    for dir in ["src", "crates"] {
        for file in rust_files(&root().join(dir)) {
            let path = shown(&file);
            if path.starts_with("crates/xtask") {
                continue;
            }
            for (n, line) in read(&file).lines().enumerate() {
                assert!(
                    !line.contains("allow(dead_code)"),
                    "{path}:{}: remove what nothing uses instead of allowing dead code",
                    n + 1
                );
            }
        }
    }
}

/// `create_sent` (a create whose outcome is unknown: look before creating again) is written in
/// one place, `MarketplaceInfo::create_outcome_unknown` and `create_outcome_known`, so that
/// exactly-once creates have one rule to read and every writer can be found by its callers.
#[test]
fn create_sent_is_written_in_one_place() {
    for dir in ["src", "crates"] {
        for file in rust_files(&root().join(dir)) {
            let path = shown(&file);
            if path == "crates/domain/src/lib.rs" || path.starts_with("crates/xtask") {
                continue;
            }
            let text = read(&file);
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                let writes = line.contains("create_sent =") || line.contains("create_sent: true");
                assert!(
                    !writes,
                    "{path}:{}: create_sent is written by MarketplaceInfo's methods only",
                    n + 1
                );
            }
        }
    }
}

/// The marketplaces by the words code names them with.
const MARKETPLACES: [&str; 4] = ["jumpseller", "mercadolibre", "shopify", "woocommerce"];

/// Files outside the marketplaces' own folders whose code (tests aside) names a marketplace,
/// and why. The registry: `domain::System` (the key of every table of marketplaces, and each
/// one's phases and default limits), `marketplaces::kind` and the adapters' registry. The record
/// and the API's shape: a stored credential's variant and a product's MercadoLibre fields. The
/// demo, which connects to its four simulated stores. Anything else moves into its
/// marketplace's folder or kind.
const NAMED_ELSEWHERE: [(&str, &str); 9] = [
    (
        "crates/domain/src/lib.rs",
        "the registry's key; credentials; ML product fields",
    ),
    (
        "crates/marketplaces/src/kind.rs",
        "the registry of connection kinds",
    ),
    ("crates/marketplaces/src/lib.rs", "the registry of adapters"),
    (
        "crates/marketplaces/src/sim.rs",
        "the shared simulator machinery names each simulator",
    ),
    ("crates/store/src/codec.rs", "a stored credential's variant"),
    (
        "crates/api/src/input.rs",
        "the API's product fields for MercadoLibre",
    ),
    (
        "crates/api/src/answers.rs",
        "the API's product fields for MercadoLibre",
    ),
    (
        "crates/api/src/openapi.rs",
        "the API's product fields for MercadoLibre",
    ),
    ("src/demo.rs", "the demo's four simulated stores"),
];

/// A marketplace is named in its own folder (`crates/marketplaces/src/<name>/`) and the
/// registry, not anywhere else: adding one is a folder and a line in the registry, and its
/// rules cannot spread. Comments and unit tests (which take a marketplace as an example) aside.
#[test]
fn a_marketplace_is_named_only_in_its_own_folder_and_the_registry() {
    let mut named = Vec::new();
    for dir in ["src", "crates"] {
        for file in rust_files(&root().join(dir)) {
            let path = shown(&file);
            let own_folder = MARKETPLACES
                .iter()
                .any(|m| path.starts_with(&format!("crates/marketplaces/src/{m}/")));
            if own_folder || path.starts_with("crates/xtask") {
                continue;
            }
            let text = read(&file);
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            let names = code.lines().any(|line| {
                let line = line.trim_start();
                let code = line.split("//").next().unwrap_or("").to_ascii_lowercase();
                !line.starts_with("//") && MARKETPLACES.iter().any(|m| code.contains(m))
            });
            if names {
                named.push(path);
            }
        }
    }
    for path in &named {
        assert!(
            NAMED_ELSEWHERE.iter().any(|(p, _)| p == path),
            "{path} names a marketplace: move what it says into the marketplace's folder \
             (crates/marketplaces/src/<name>/) or its kind"
        );
    }
    for (path, why) in NAMED_ELSEWHERE {
        assert!(
            named.iter().any(|p| p == path),
            "{path} no longer names a marketplace ({why}); take it off NAMED_ELSEWHERE"
        );
    }
}
