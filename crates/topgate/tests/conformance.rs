//! Conformance suite: real third-party TOP clients against a topgate this test starts.
//!
//! Drives the npm package `node-taobao-topclient` (pinned in `conformance/node/package.json` and
//! its lock file) and the PyPI package `py-taobao-open` (pinned in
//! `conformance/python/requirements.txt`) through `conformance/node/run.js` and
//! `conformance/python/run.py`. Each script uses its client's own request building, signing and
//! response parsing for the four seed examples and the error cases (25, 22, 50, 31), prints one
//! JSON line per case and exits 0 only if every case holds.
//!
//! The clients are installed into `conformance/node/node_modules` and
//! `conformance/python/.vendor` when absent (under a lock file, so concurrent test processes do
//! not clash). `node`, `npm` and `python3` (with pip) must be on `PATH`: without them this test
//! fails, it never passes silently.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Fewer lines than this means a script stopped early, even if it exited 0.
const MIN_CASES: usize = 9;

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Runs a command to completion with a time limit; the child is killed if it overruns.
async fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("conformance: could not start {what}: {e}"),
        Err(_) => panic!("conformance: {what} did not finish within {limit:?} (killed)"),
    }
}

/// Fails the test with a clear message when a tool the suite needs is not installed.
async fn require_tool(program: &str, args: &[&str], hint: &str) {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let found = match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => true,
        Ok(Ok(out)) => panic!(
            "conformance: `{program} {}` failed ({}): {}{hint}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(Err(_)) => false,
        Err(_) => panic!("conformance: `{program} {}` hung", args.join(" ")),
    };
    assert!(
        found,
        "conformance: `{program}` is not on PATH. The conformance suite drives the real Node and \
         Python TOP clients and cannot run without it: {hint}"
    );
}

fn show(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The version `conformance/node/package.json` pins for `node-taobao-topclient`.
fn node_pin(node_dir: &Path) -> String {
    let manifest = fs::read_to_string(node_dir.join("package.json")).expect("package.json");
    let manifest: Value = serde_json::from_str(&manifest).expect("package.json is JSON");
    manifest["dependencies"]["node-taobao-topclient"]
        .as_str()
        .expect("package.json pins node-taobao-topclient")
        .to_string()
}

fn node_installed(node_dir: &Path, pin: &str) -> bool {
    let modules = node_dir.join("node_modules");
    let installed = fs::read_to_string(modules.join("node-taobao-topclient/package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    installed.as_deref() == Some(pin) && modules.join("request/package.json").is_file()
}

/// The version `conformance/python/requirements.txt` pins for `py-taobao-open`.
fn python_pin(python_dir: &Path) -> String {
    let reqs = fs::read_to_string(python_dir.join("requirements.txt")).expect("requirements.txt");
    reqs.lines()
        .find_map(|l| l.trim().strip_prefix("py-taobao-open=="))
        .expect("requirements.txt pins py-taobao-open==<version>")
        .trim()
        .to_string()
}

fn python_installed(python_dir: &Path, pin: &str) -> bool {
    let vendor = python_dir.join(".vendor");
    vendor
        .join(format!("py_taobao_open-{pin}.dist-info/RECORD"))
        .is_file()
        && vendor.join("taobao_open/api/base.py").is_file()
}

/// Installs both clients into their local folders unless already there.
async fn install_clients(root: &Path) {
    let conformance = root.join("conformance");
    let node_dir = conformance.join("node");
    let python_dir = conformance.join("python");

    // One installer at a time across processes: an exclusive lock on a file beside the folders.
    let lock_path = conformance.join(".install.lock");
    let lock = tokio::task::spawn_blocking(move || {
        let file = File::create(&lock_path).expect("create conformance/.install.lock");
        file.lock().expect("lock conformance/.install.lock");
        file
    })
    .await
    .expect("lock task");

    let pin = node_pin(&node_dir);
    if !node_installed(&node_dir, &pin) {
        let mut cmd = Command::new("npm");
        cmd.arg("install")
            .arg("--prefix")
            .arg(&node_dir)
            .args(["--no-audit", "--no-fund"])
            .current_dir(&node_dir);
        let out = run_bounded(cmd, INSTALL_TIMEOUT, "npm install").await;
        assert!(
            out.status.success(),
            "conformance: npm install failed\n{}",
            show(&out)
        );
        assert!(
            node_installed(&node_dir, &pin),
            "conformance: npm install did not install node-taobao-topclient {pin}\n{}",
            show(&out)
        );
    }

    let pin = python_pin(&python_dir);
    if !python_installed(&python_dir, &pin) {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "--upgrade", "--no-input"])
            .args(["--disable-pip-version-check", "--target"])
            .arg(python_dir.join(".vendor"))
            .arg("-r")
            .arg(python_dir.join("requirements.txt"))
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .current_dir(&python_dir);
        let out = run_bounded(cmd, INSTALL_TIMEOUT, "pip install").await;
        assert!(
            out.status.success(),
            "conformance: pip install failed\n{}",
            show(&out)
        );
        assert!(
            python_installed(&python_dir, &pin),
            "conformance: pip install did not install py-taobao-open {pin}\n{}",
            show(&out)
        );
    }
    drop(lock);
}

/// Starts a fresh sandbox, runs one client script against it, and returns a failure report
/// (None when the script passed every case).
async fn run_client(name: &str, mut cmd: Command) -> Option<String> {
    let app = common::spawn_app().await;
    cmd.env("TOPGATE_URL", &app.url)
        .env("TOPGATE_APP_KEY", "test")
        .env("TOPGATE_SECRET", "test")
        .env("TOPGATE_SESSION", "test-session");
    let out = run_bounded(cmd, RUN_TIMEOUT, name).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("--- {name} ---\n{stdout}");
    let mut problems = Vec::new();
    let mut cases = 0;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v["ok"] == Value::Bool(true) => cases += 1,
            Ok(v) => {
                cases += 1;
                problems.push(format!("case failed: {}", v["case"]));
            }
            Err(_) => problems.push(format!("not a JSON case line: {line}")),
        }
    }
    if !out.status.success() {
        problems.push(format!("exit status {}", out.status));
    }
    if cases < MIN_CASES {
        problems.push(format!(
            "only {cases} cases reported (expected {MIN_CASES}+)"
        ));
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "{name} (server {}):\n  {}\n{}",
            app.url,
            problems.join("\n  "),
            show(&out)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_conform() {
    require_tool(
        "node",
        &["--version"],
        "install Node.js (with npm), e.g. `apt-get install nodejs npm`",
    )
    .await;
    require_tool(
        "npm",
        &["--version"],
        "install npm, e.g. `apt-get install npm`",
    )
    .await;
    require_tool(
        "python3",
        &["-m", "pip", "--version"],
        "install Python 3 with pip, e.g. `apt-get install python3 python3-pip`",
    )
    .await;

    let root = workspace_root();
    install_clients(&root).await;

    let node_dir = root.join("conformance/node");
    let mut node = Command::new("node");
    node.arg(node_dir.join("run.js")).current_dir(&node_dir);

    let python_dir = root.join("conformance/python");
    let mut python = Command::new("python3");
    python
        .arg(python_dir.join("run.py"))
        .current_dir(&python_dir)
        .env("PYTHONPATH", python_dir.join(".vendor"))
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONDONTWRITEBYTECODE", "1");

    // One fresh sandbox per client, so each sends the one-shot seed examples first.
    let failures: Vec<String> = [
        run_client("node-taobao-topclient (conformance/node/run.js)", node).await,
        run_client("py-taobao-open (conformance/python/run.py)", python).await,
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failures.is_empty(),
        "conformance failures:\n\n{}",
        failures.join("\n\n")
    );
}
