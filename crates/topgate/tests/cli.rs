//! The `topgate` binary (issue 2): `app create|list|disable|rotate-secret`, `session create`,
//! `sign --explain` on vector V1 (the canonical string and sign, never the secret), and
//! `serve --sandbox --listen 127.0.0.1:0`: it prints its real address and a one-liner that
//! succeeds when run, keeps its state across restarts, and shuts down cleanly on SIGTERM. A
//! plain `serve` over a CLI-made database honours `app disable` and `app rotate-secret` within
//! its app cache time (1 s). Operator errors: unknown keys of the settings file, an unreachable
//! PostgreSQL, no notice on a quiet command, clap's errors naming the option concerned, and help
//! that never shows a secret variable's value.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_topgate");

/// A scratch directory (also the working directory, so no stray `topgate.toml` or default
/// database is picked up) and its database URL.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn db(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("x.db").display())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .env_remove("TOPGATE_DATABASE_URL")
            .env("TOPGATE_LOG", "warn")
            .arg("--database-url")
            .arg(self.db());
        cmd
    }

    /// Runs `topgate call taobao.time.get` against `url` as `app_key` signing with `secret`.
    fn call_time_get(&self, url: &str, app_key: &str, secret: &str) -> Output {
        Command::new(BIN)
            .current_dir(self.path())
            .env("TOPGATE_LOG", "warn")
            .args(["call", "taobao.time.get", "--url", url])
            .args(["--app-key", app_key, "--secret", secret])
            .output()
            .expect("call runs")
    }

    /// Runs `topgate --database-url <url> <args>` at the default log level (what an operator
    /// sees), to completion.
    fn run_at_default_log_level(&self, url: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .current_dir(self.path())
            .env_remove("TOPGATE_LOG")
            .args(["--database-url", url])
            .args(args)
            .output()
            .expect("topgate runs")
    }

    /// Runs `topgate <args>` to completion with `env` set and no database URL of the
    /// scratch's own (the arguments or `env` name one, or the default is meant).
    fn run_plain(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        Command::new(BIN)
            .current_dir(self.path())
            .env("TOPGATE_LOG", "warn")
            .envs(env.iter().copied())
            .args(args)
            .output()
            .expect("topgate runs")
    }

    /// Runs `topgate --database-url … <args>` to completion.
    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("topgate runs")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "topgate {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 stdout")
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Checks that a command failed; returns what it said on stderr.
fn failed_saying(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `topgate serve`, killed (by its own pid) if the test ends before it exits.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Served {
    fn start(scratch: &Scratch, args: &[&str]) -> Self {
        Self::spawn(scratch.command().args(args).stderr(Stdio::null()))
    }

    /// Starts `serve` logging at info level into `log`.
    fn start_logging(scratch: &Scratch, args: &[&str], log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        Self::spawn(
            scratch
                .command()
                .env("TOPGATE_LOG", "info")
                .args(args)
                .stderr(file),
        )
    }

    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Reads stdout lines until one starts with `prefix` (bounded wait); returns all read.
    fn read_until(&self, prefix: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with(prefix);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no line starting with {prefix:?} ({e}); got {seen:?}"),
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "serve exited with {status} on SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn vector_v1() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/signatures.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("vectors"))
        .expect("vectors JSON");
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "V1")
        .cloned()
        .expect("V1")
}

/// The URL in a `… listening on http://…/router/rest …` line.
fn url_in(line: &str) -> String {
    let start = line.find("http://").expect("a URL");
    line[start..].split_whitespace().next().unwrap().to_string()
}

/// `host:port` of an `http://host:port/…` URL.
fn address_in(url: &str) -> String {
    let rest = url.trim_start_matches("http://");
    rest.split('/').next().unwrap().to_string()
}

/// Sends `request` (whole, `Connection: close`) to `address` and reads the answer to its end.
fn exchange(address: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connects");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn app_create_list_disable_rotate_and_session_create() {
    let s = Scratch::new();
    let secret = "cli-secret-5e1f0a9b";
    let created = s.json(&["app", "create", "--app-key", "k", "--secret", secret]);
    assert_eq!(created["app_key"], "k");
    assert!(created["methods"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m[0] == "taobao.time.get"));

    let list = s.ok(&["app", "list"]);
    assert!(!list.contains(secret), "app list prints a secret: {list}");
    let apps: Value = serde_json::from_str(&list).unwrap();
    let k = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app_key"] == "k")
        .expect("k listed");
    assert_eq!(k["enabled"], true);

    // A second create of the same key is refused.
    let again = s.run(&["app", "create", "--app-key", "k", "--secret", "x"]);
    assert!(!again.status.success());

    // A grant names a served method and a rate of at least 1.
    for (args, error) in [
        (
            vec!["app", "grant", "k", "taobao.time.gets"],
            r#"invalid request: method "taobao.time.gets" is not a served method"#,
        ),
        (
            vec![
                "app",
                "grant",
                "k",
                "taobao.time.get",
                "--calls-per-second",
                "0",
            ],
            "invalid value '0' for '--calls-per-second <CALLS_PER_SECOND>': must be at least 1",
        ),
    ] {
        let out = s.run(&args);
        let stderr = failed_saying(&out);
        assert!(stderr.contains(error), "{stderr}");
    }
    let granted = s.json(&[
        "app",
        "grant",
        "k",
        "taobao.time.get",
        "--calls-per-second",
        "3",
    ]);
    assert_eq!(granted["calls_per_second"], 3);
    assert!(granted.get("note").is_none(), "{granted}");
    s.json(&[
        "admin",
        "create",
        "apps",
        r#"{"app_key": "sb", "secret": "sb-secret", "sandbox": true}"#,
    ]);
    let on_sandbox = s.json(&[
        "app",
        "grant",
        "sb",
        "taobao.time.get",
        "--calls-per-second",
        "2",
    ]);
    assert_eq!(
        on_sandbox["note"],
        "a sandbox app is not rate limited: the limit is stored, not applied"
    );
    let revoked = s.json(&["app", "revoke", "k", "taobao.time.get"]);
    assert_eq!(revoked["revoked"], "taobao.time.get");
    let apps = s.json(&["app", "list"]);
    assert!(
        !apps[0]["methods"].to_string().contains("taobao.time.get"),
        "{apps}"
    );
    let again = s.run(&["app", "revoke", "k", "taobao.time.get"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("method \"taobao.time.get\" is not granted to app k"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let disabled = s.json(&["app", "disable", "k"]);
    assert_eq!(disabled["enabled"], false);
    let apps = s.json(&["app", "list"]);
    assert_eq!(apps[0]["enabled"], false, "{apps}");
    assert!(!s.run(&["app", "disable", "nobody"]).status.success());

    let rotated = s.json(&["app", "rotate-secret", "k"]);
    let new_secret = rotated["secret"].as_str().expect("new secret");
    assert!(!new_secret.is_empty());
    assert_ne!(new_secret, secret);
    let again = s.json(&["app", "rotate-secret", "k"]);
    assert_ne!(again["secret"], rotated["secret"]);
    assert!(!s.run(&["app", "rotate-secret", "nobody"]).status.success());

    // A session is for a user that exists.
    let refused = s.run(&["session", "create", "--app-key", "k", "--user-id", "1"]);
    let stderr = failed_saying(&refused);
    assert!(
        stderr.contains("invalid request: user_id 1 is not a user"),
        "{stderr}"
    );
    s.json(&["admin", "create", "users", r#"{"user_id": 1, "nick": "n"}"#]);
    let session = s.json(&["session", "create", "--app-key", "k", "--user-id", "1"]);
    assert_eq!(session["user_id"], 1);
    assert!(!session["session"].as_str().unwrap().is_empty());
    // Without --ttl-secs, a session lives as long as one the admin API makes without
    // `ttl_secs` (the same constant: one day; tests/admin.rs checks the day itself).
    let admin_made = s.json(&[
        "admin",
        "create",
        "sessions",
        r#"{"app_key": "k", "user_id": 1}"#,
    ]);
    let expiry = |v: &Value| {
        top_protocol::timestamp::parse_wall_clock(v["expires_at"].as_str().unwrap())
            .unwrap_or_else(|| panic!("expires_at: {v}"))
    };
    let apart = expiry(&admin_made) - expiry(&session);
    assert!(
        apart >= time::Duration::ZERO && apart < time::Duration::seconds(30),
        "{session} {admin_made}"
    );
    // Revoked: it ends now, and the answer does not repeat the key.
    let key = session["session"].as_str().unwrap();
    let revoked = s.json(&["session", "revoke", key]);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["user_id"], 1);
    assert!(expiry(&revoked) < expiry(&session), "{revoked}");
    assert!(!revoked.to_string().contains(key));
    let stderr = failed_saying(&s.run(&["session", "revoke", "no-such-session"]));
    assert!(stderr.contains("not found: no such session"), "{stderr}");
    let help = s.ok(&["session", "create", "--help"]);
    assert!(help.contains("[default: 86400]"), "{help}");
    assert!(help.contains("POST /admin/sessions"), "{help}");
    assert!(!s
        .run(&["session", "create", "--app-key", "nobody", "--user-id", "1"])
        .status
        .success());
}

/// A settings file named with `--config` must exist, and a database URL of another scheme is
/// refused by its scheme alone (the rest may hold a password), never taken for a file path.
#[test]
fn a_missing_config_file_and_an_unknown_database_scheme_are_errors() {
    let scratch = Scratch::new();
    let out = scratch.run(&["--config", "nope.toml", "app", "list"]);
    let stderr = failed_saying(&out);
    assert!(stderr.contains("nope.toml does not exist"), "{stderr}");

    let out = scratch.run_plain(
        &[],
        &[
            "--database-url",
            "mysql://user:s3cretpw@host/db",
            "app",
            "list",
        ],
    );
    let stderr = failed_saying(&out);
    assert!(
        stderr.contains("unsupported database URL scheme mysql://"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cretpw"), "{stderr}");
    let created: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(created.is_empty(), "{created:?}");
}

/// A misspelt key in the settings file, at the top or in a table, stops every command before it
/// does anything, naming the key and the file; `TOPGATE_*` variables that are no settings stay
/// harmless; the `topgate.toml` of a parent directory is not read.
#[test]
fn an_unknown_key_in_the_settings_file_stops_startup_naming_it_and_the_file() {
    let scratch = Scratch::new();
    std::fs::write(
        scratch.path().join("topgate.toml"),
        "listen_adress = \"0.0.0.0:8080\"\n[events]\nretry_jiter = 0.5\n",
    )
    .unwrap();
    let out = scratch.run(&["app", "list"]);
    let stderr = failed_saying(&out);
    assert!(
        stderr.contains("unknown keys `events.retry_jiter`, `listen_adress`"),
        "{stderr}"
    );
    assert!(stderr.contains("topgate.toml"), "{stderr}");
    assert!(!scratch.path().join("x.db").exists(), "nothing was opened");

    std::fs::write(scratch.path().join("ok.toml"), "listen = \"127.0.0.1:0\"\n").unwrap();
    std::fs::write(scratch.path().join("typo.toml"), "[event]\nlease_ms = 1\n").unwrap();
    let out = scratch.run(&["--config", "typo.toml", "app", "list"]);
    let stderr = failed_saying(&out);
    assert!(stderr.contains("unknown key `event`"), "{stderr}");
    assert!(stderr.contains("typo.toml"), "{stderr}");

    // Only the working directory's topgate.toml is read, not that of a parent directory.
    let sub = scratch.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    for (dir, config) in [(scratch.path(), Some("ok.toml")), (sub.as_path(), None)] {
        let mut command = scratch.command();
        command.current_dir(dir).env("TOPGATE_NOT_A_SETTING", "1");
        if let Some(config) = config {
            command.args(["--config", config]);
        }
        let out = command.args(["app", "list"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A PostgreSQL server that refuses connections is reported at once with the cause, by host and
/// port, never with the URL's password (a pool would retry until its timeout and say only
/// "pool timed out").
#[test]
fn an_unreachable_postgres_is_reported_at_once_with_the_cause_and_no_password() {
    let scratch = Scratch::new();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://topgate:s3cretpw@127.0.0.1:{port}/topgate");
    let started = Instant::now();
    let out = scratch.run_at_default_log_level(&url, &["app", "list"]);
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{port}: Connection refused"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cretpw"), "{stderr}");
}

/// At the default log level a command over an existing database prints its answer and nothing
/// on stderr: over PostgreSQL (`TOPGATE_TEST_DATABASE=postgres`) the schema check once logged
/// a `relation "schema_migrations" already exists` notice on every command.
#[test]
fn commands_over_an_existing_database_print_no_notice() {
    let scratch = Scratch::new();
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::test_database_url(scratch.path()));
    for _ in 0..2 {
        let out = scratch.run_at_default_log_level(&url, &["app", "list"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    }
}

/// Commands started together on a database that does not exist yet all succeed: each
/// migration is looked up inside the write lock that applies it, so the later process finds it
/// done instead of failing on tables the first one just made (a server and a CLI command
/// started by one script). Several fresh files, so that the race has its chances.
#[test]
fn commands_started_together_on_a_new_database_all_succeed() {
    let scratch = Scratch::new();
    for attempt in 0..5 {
        let url = format!(
            "sqlite://{}",
            scratch.path().join(format!("new-{attempt}.db")).display()
        );
        let children: Vec<Child> = (0..4)
            .map(|_| {
                Command::new(BIN)
                    .current_dir(scratch.path())
                    .env("TOPGATE_LOG", "warn")
                    .args(["--database-url", &url, "app", "list"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("topgate starts")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("topgate runs");
            assert!(
                out.status.success(),
                "attempt {attempt}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
        }
    }
}

/// The sandbox's well-known apps never land in the database configured for real use: with
/// `--sandbox`, `TOPGATE_DATABASE_URL` (and a settings file's `database_url`) are set aside for
/// `.topgate/sandbox.db`, with a note; and a database that already has apps of its own is
/// refused by the seed even when named with `--database-url`.
#[test]
fn the_sandbox_is_never_seeded_into_a_real_database() {
    let s = Scratch::new();
    let real = format!("sqlite://{}", s.path().join("real.db").display());
    let with_real_database =
        |args: &[&str]| s.run_plain(&[("TOPGATE_DATABASE_URL", real.as_str())], args);
    let created = with_real_database(&["app", "create", "--app-key", "12345678", "--name", "real"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let seeded = with_real_database(&["--sandbox", "admin", "seed-sandbox"]);
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let note = String::from_utf8_lossy(&seeded.stderr);
    assert!(
        note.contains("--sandbox uses sqlite://.topgate/sandbox.db"),
        "{note}"
    );
    assert!(
        !note.contains("real.db"),
        "the configured URL is not shown: {note}"
    );
    assert!(s.path().join(".topgate/sandbox.db").is_file());
    let apps = with_real_database(&["app", "list"]);
    let apps: Value = serde_json::from_slice(&apps.stdout).expect("JSON");
    let keys: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app_key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["12345678"],
        "the real database keeps only its own app"
    );

    let refused = with_real_database(&[
        "--sandbox",
        "--database-url",
        &real,
        "admin",
        "seed-sandbox",
    ]);
    let error = failed_saying(&refused);
    assert!(error.contains("holds 1 app(s) and no sandbox"), "{error}");
    let served = s.run_plain(
        &[],
        &[
            "--sandbox",
            "--database-url",
            &real,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(
        failed_saying(&served).contains("no sandbox"),
        "serve refuses to seed it"
    );
}

/// Mistakes on the command line are reported by clap (exit code 2) against the option given:
/// a missing choice among options names all of them, and a bad or negative value names its
/// option rather than being taken for an unknown argument or checked after parsing.
#[test]
fn command_line_mistakes_name_the_option_they_concern() {
    let scratch = Scratch::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["events", "redeliver", "1"],
            "<--event <EVENT>|--dead|--from-event <FROM_EVENT>>",
        ),
        (&["events", "attempts"], "<--event <EVENT>|--sink <SINK>>"),
        // An event's attempts are listed whole: a limit there would be ignored.
        (
            &["events", "attempts", "--event", "1", "--limit", "5"],
            "'--event <EVENT>' cannot be used with '--limit <LIMIT>'",
        ),
        (
            &["events", "redeliver", "1", "--dead", "--from-event", "3"],
            "'--dead' cannot be used with '--from-event <FROM_EVENT>'",
        ),
        (
            &[
                "app",
                "create",
                "--app-key",
                "a",
                "--calls-per-second",
                "-1",
            ],
            "invalid value '-1' for '--calls-per-second <CALLS_PER_SECOND>': must be at least 1",
        ),
        (
            &["app", "grant", "a", "m", "--calls-per-second", "0"],
            "invalid value '0' for '--calls-per-second <CALLS_PER_SECOND>': must be at least 1",
        ),
        (
            &[
                "session",
                "create",
                "--app-key",
                "a",
                "--user-id",
                "1",
                "--ttl-secs",
                "0",
            ],
            "invalid value '0' for '--ttl-secs <TTL_SECS>': must be at least 1",
        ),
        (
            &["events", "list", "--limit", "-5"],
            "invalid value '-5' for '--limit <LIMIT>': must be at least 1",
        ),
        // Every --limit is parsed alike (the HTTP listings cut such values into range instead).
        (
            &["events", "deliveries", "1", "--limit", "0"],
            "invalid value '0' for '--limit <LIMIT>': must be at least 1",
        ),
        (
            &["events", "attempts", "--sink", "1", "--limit", "-2"],
            "invalid value '-2' for '--limit <LIMIT>': must be at least 1",
        ),
        (
            &["admin", "right-orders", "--limit", "0"],
            "invalid value '0' for '--limit <LIMIT>': must be at least 1",
        ),
        (
            &["admin", "right-orders", "--limit", "-1"],
            "invalid value '-1' for '--limit <LIMIT>': must be at least 1",
        ),
        (
            &["admin", "idempotency", "--limit", "0"],
            "invalid value '0' for '--limit <LIMIT>': must be at least 1",
        ),
        (
            &["bench", "--duration", "-1"],
            "invalid value '-1' for '--duration <DURATION>'",
        ),
        (
            &["bench", "--requests", "0"],
            "invalid value '0' for '--requests <REQUESTS>': must be at least 1",
        ),
        (
            &["call", "taobao.time.get", "--format", "yaml"],
            "invalid value 'yaml' for '--format <FORMAT>': expected json or xml",
        ),
        (
            &["sign", "--secret", "s", "--sign-method", "sha1"],
            "md5, hmac or hmac-sha256",
        ),
        (
            &["sign", "--secret", "s", "--param", "app_key"],
            "invalid value 'app_key' for '--param <NAME=VALUE>': expected NAME=VALUE",
        ),
    ];
    for (args, expected) in cases {
        let out = scratch.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!scratch.path().join("x.db").exists(), "nothing ran");

    // A limit past the largest page is cut to it, as over HTTP; a negative cursor is a value.
    let listed = scratch.json(&["admin", "right-orders", "--after", "-1", "--limit", "5000"]);
    assert_eq!(listed, serde_json::json!([]));

    let out = scratch.run(&["serve", "--listen", "nonsense"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot listen on nonsense:"), "{stderr}");
    let out = scratch.run(&["admin", "create", "apps", "{\"secret\": \"s3cret\""]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("<JSON> is not valid JSON"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// `--help` says which variables an option reads, never their values: the database URL may
/// hold a password and the admin token is a secret.
#[test]
fn help_never_shows_the_values_of_secret_environment_variables() {
    for args in [
        &["--help"][..],
        &["bench", "--help"],
        &["events", "add-webhook", "--help"],
    ] {
        let out = Command::new(BIN)
            .env("TOPGATE_DATABASE_URL", "postgres://u:dbpw1234@h/d")
            .env("TOPGATE_ADMIN_TOKEN", "admintok1234")
            .env("TOPGATE_WEBHOOK_SECRET", "hooksecret123456")
            .args(args)
            .output()
            .expect("topgate runs");
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("[env: TOPGATE_DATABASE_URL]"), "{help}");
        for secret in ["dbpw1234", "admintok1234", "hooksecret123456"] {
            assert!(!help.contains(secret), "{args:?} shows {secret}: {help}");
        }
    }
}

#[test]
fn sign_explain_prints_v1_canonical_string_and_sign_but_never_the_secret() {
    let s = Scratch::new();
    let v1 = vector_v1();
    let secret = v1["secret"].as_str().unwrap();
    assert_eq!(secret, "test_secret_123");
    let mut args = vec![
        "sign".to_string(),
        "--explain".into(),
        "--secret".into(),
        secret.into(),
        "--sign-method".into(),
        "md5".into(),
    ];
    for (k, v) in v1["params"].as_object().unwrap() {
        args.push("--param".into());
        args.push(format!("{k}={}", v.as_str().unwrap()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.run(&args);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let canonical = v1["string_to_sign"].as_str().unwrap();
    assert!(
        stdout.lines().any(|l| l == canonical),
        "canonical string missing: {stdout}"
    );
    assert!(stdout.contains(&format!("sign: {}", v1["sign"].as_str().unwrap())));
    assert!(!stdout.contains(secret), "{stdout}");
    assert!(!stderr.contains(secret), "{stderr}");

    // Without --explain: the sign alone.
    let plain: Vec<&str> = args
        .iter()
        .filter(|a| **a != "--explain")
        .copied()
        .collect();
    assert_eq!(s.ok(&plain).trim(), v1["sign"].as_str().unwrap());

    // The secret from the environment instead, out of the process list.
    let without_secret: Vec<&str> = plain
        .iter()
        .enumerate()
        .filter(|(i, a)| **a != "--secret" && (*i == 0 || plain[i - 1] != "--secret"))
        .map(|(_, a)| *a)
        .collect();
    let out = s
        .command()
        .env("TOPGATE_APP_SECRET", secret)
        .args(&without_secret)
        .output()
        .expect("topgate runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        v1["sign"].as_str().unwrap()
    );

    // A sign given as a parameter is checked against the computed one.
    let mut with_sign = args.clone();
    with_sign.extend(["--param", "sign=F442DEBBB11066BE44A8B0D50E8D0DA9"]);
    let out = s.ok(&with_sign);
    assert!(out.contains("does NOT match"), "{out}");
    assert!(!out.contains(secret));
}

#[test]
fn serve_sandbox_prints_its_address_and_a_working_one_liner() {
    let s = Scratch::new();
    let mut one_liners = Vec::new();
    // Twice over the same database: the sandbox keeps its state and seeds only once. The
    // one-liner names the binary as it was started, or `cargo run` when cargo ran it (cargo
    // sets CARGO_MANIFEST_DIR for what it runs, as it does for this test).
    for under_cargo in [false, true] {
        let mut serve = s.command();
        if !under_cargo {
            serve.env_remove("CARGO_MANIFEST_DIR");
        }
        let served = Served::spawn(
            serve
                .args(["serve", "--sandbox", "--listen", "127.0.0.1:0"])
                .stderr(Stdio::null()),
        );
        let lines = served.read_until("try it:");
        let first = &lines[0];
        assert!(
            first.contains("listening on http://127.0.0.1:"),
            "{lines:?}"
        );
        let url = url_in(first);
        let port: u16 = url
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches("/router/rest")
            .parse()
            .expect("a port");
        assert_ne!(port, 0, "the bound port is printed, not 0");
        let all = lines.join("\n");
        assert!(all.contains("app_key: test"), "{all}");
        assert!(all.contains("session: test-session"), "{all}");

        let one_liner = lines.last().unwrap();
        let shown = one_liner.strip_prefix("try it: ").expect("one-liner");
        let command = if under_cargo {
            let rest = shown
                .strip_prefix("cargo run -- ")
                .or_else(|| shown.strip_prefix("cargo run --release -- "))
                .unwrap_or_else(|| panic!("run through cargo: {shown}"));
            format!("{BIN} {rest}")
        } else {
            shown.to_string()
        };
        assert!(command.contains(&url), "{command}");
        let mut words = command.split_whitespace();
        let program = words.next().unwrap();
        assert_eq!(program, BIN);
        let out = Command::new(program)
            .args(words)
            .current_dir(s.path())
            .env("TOPGATE_LOG", "warn")
            .output()
            .expect("the one-liner runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("买**称"), "{stdout}");
        one_liners.push(command);
        served.terminate();
    }
    let apps = s.json(&["app", "list"]);
    let keys: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["other", "test"], "seeded once: {apps}");
    // Each app's role bindings are listed: the sandbox app acts for every role, the other none.
    let test_app = &apps[1];
    assert_eq!(test_app["seller_id"], 2000, "{test_app}");
    for role in ["supplier_id", "partner_id", "provider_id"] {
        assert!(test_app[role].is_i64(), "{role}: {test_app}");
        assert!(apps[0][role].is_null(), "{role}: {}", apps[0]);
    }
    assert!(!s.ok(&["app", "list"]).contains("\"secret\""));

    // A secret rotated since the seed is neither shown nor claimed to be `test`: the one-liner
    // takes it from the environment, and works with it there.
    let rotated = s.json(&["--sandbox", "app", "rotate-secret", "test"]);
    let secret = rotated["secret"].as_str().unwrap().to_string();
    let served = Served::spawn(
        s.command()
            .args(["serve", "--sandbox", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::null()),
    );
    let lines = served.read_until("try it:");
    let all = lines.join("\n");
    assert!(!all.contains(&secret), "{all}");
    assert!(
        all.contains("app_key: test  secret: rotated since the seed (not shown)"),
        "{all}"
    );
    assert!(all.contains("app_key: other  secret: other"), "{all}");
    let shown = lines.last().unwrap().strip_prefix("try it: ").unwrap();
    let command = shown
        .strip_prefix("TOPGATE_APP_SECRET=<its secret> ")
        .unwrap_or_else(|| panic!("the secret comes from the environment: {shown}"));
    let mut words = command.split_whitespace().skip_while(|w| *w != "call");
    let out = Command::new(BIN)
        .arg(words.next().unwrap())
        .args(words)
        .current_dir(s.path())
        .env("TOPGATE_LOG", "warn")
        .env("TOPGATE_APP_SECRET", &secret)
        .output()
        .expect("the one-liner runs");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    served.terminate();
}

#[test]
fn a_refused_call_is_logged_with_its_request_id_app_key_and_method_but_no_secret() {
    let s = Scratch::new();
    let secret = "log-secret-7d2c9e41";
    s.ok(&["app", "create", "--app-key", "logged", "--secret", secret]);
    let log = s.path().join("serve.log");
    let served = Served::start_logging(&s, &["serve", "--listen", "127.0.0.1:0"], &log);
    let url = url_in(&served.read_until("topgate listening on")[0]);
    let out = s.call_time_get(&url, "logged", "not-the-secret");
    assert_eq!(out.status.code(), Some(3), "a TOP error answer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let request_id = stderr
        .trim_end()
        .split("; request_id ")
        .nth(1)
        .unwrap_or_else(|| panic!("no request_id in {stderr}"))
        .to_string();
    served.terminate();
    let logged = std::fs::read_to_string(&log).expect("log written");
    let line = logged
        .lines()
        .find(|l| l.contains(&format!("request_id={request_id}")))
        .unwrap_or_else(|| panic!("no line for {request_id} in {logged}"));
    for field in [
        "refused",
        "app_key=logged",
        "method=taobao.time.get",
        "code=25",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(!logged.contains(secret), "{logged}");
    assert!(!logged.contains("not-the-secret"), "{logged}");
}

/// `call` tells its failures apart by exit status: 3 for a TOP error answer (on stderr with
/// every field it has), 1 when no TOP answer came, 2 (clap's) for a usage error; `call --help`
/// says so.
#[test]
fn call_exits_3_on_a_top_error_1_without_a_top_answer_and_2_on_a_usage_error() {
    let s = Scratch::new();
    s.ok(&[
        "app",
        "create",
        "--app-key",
        "k",
        "--secret",
        "exit-secret-3c9d",
    ]);
    let served = Served::start(&s, &["serve", "--listen", "127.0.0.1:0"]);
    let url = url_in(&served.read_until("topgate listening on")[0]);
    let call = |args: &[&str]| {
        Command::new(BIN)
            .current_dir(s.path())
            .env("TOPGATE_LOG", "warn")
            .args(["call", "--app-key", "k", "--secret", "exit-secret-3c9d"])
            .args(args)
            .output()
            .expect("call runs")
    };
    let out = call(&["taobao.time.get", "--url", &url]);
    assert_eq!(out.status.code(), Some(0));

    // An error answer with a sub_code and a sub_msg names both, and the request id.
    let out = call(&["alibaba.diantao.tripartite.right.pay.notify", "--url", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.starts_with(
            "TOP error 50: Remote service error; sub_code isv.missing-parameter; \
             sub_msg 非法参数: tripartite_pay_notify_dto is required; request_id "
        ),
        "{stderr}"
    );
    // One with a sub_msg only names that.
    let out = call(&["no.such.method", "--url", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.starts_with(
            "TOP error 22: Invalid method; sub_msg method no.such.method does not exist; \
             request_id "
        ),
        "{stderr}"
    );

    // No TOP answer: a path that is no gateway's, then a server that is gone.
    let elsewhere = url.replace("/router/rest", "/nothing");
    let out = call(&["taobao.time.get", "--url", &elsewhere]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unreadable response: HTTP 404"), "{stderr}");
    served.terminate();
    let out = call(&["taobao.time.get", "--url", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("transport failure"), "{stderr}");

    let out = call(&["taobao.time.get", "--url", &url, "--sign-method", "sha1"]);
    assert_eq!(out.status.code(), Some(2));
    // A URL that is none, or not http(s), is a usage error too.
    for bad in ["not a url", "ftp://127.0.0.1/router/rest", "127.0.0.1:8080"] {
        let out = call(&["taobao.time.get", "--url", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--url"), "{stderr}");
    }
    let help = s.ok(&["call", "--help"]);
    for status in [
        "0  the call succeeded",
        "1  no TOP answer",
        "2  a usage error",
        "3  the gateway answered an error_response",
    ] {
        assert!(help.contains(status), "{status}: {help}");
    }
}

/// Starts a server answering every request with `status` (`502 Bad Gateway`), `content_type`
/// and `body`, as a proxy with no gateway behind it does; returns its `/router/rest` URL.
fn answering(status: &'static str, content_type: &'static str, body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}/router/rest", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // The whole request is read first: answering before it would reset the connection.
            let mut reader = BufReader::new(&stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                line.clear();
            }
            let _ = reader.read_exact(&mut vec![0; length]);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// An answer that is no TOP envelope is no TOP answer: exit 1 with the status and the start of
/// the body, never the body printed as a success (exit 0) or a made-up TOP error (exit 3).
#[test]
fn call_exits_1_when_the_answer_is_no_top_envelope() {
    let s = Scratch::new();
    let upstream = r#"{"message":"upstream unavailable"}"#;
    let bad_gateway = answering("502 Bad Gateway", "application/json", upstream);
    let page = concat!(
        r#"<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml">"#,
        "<body>down</body></html>"
    );
    let unavailable = answering("503 Service Unavailable", "text/html", page);
    let no_code = answering("200 OK", "application/json", r#"{"error_response":"text"}"#);
    let not_top = answering("200 OK", "application/json", r#"{"status":"ok"}"#);
    let envelope = "not a TOP envelope";
    for (url, extra, shown) in [
        (
            &bad_gateway,
            None,
            format!("HTTP 502 Bad Gateway: {envelope}"),
        ),
        (
            &bad_gateway,
            Some("--simplify"),
            format!("HTTP 502 Bad Gateway: {envelope}"),
        ),
        (
            &unavailable,
            Some("--format=xml"),
            format!("HTTP 503 Service Unavailable: {envelope}"),
        ),
        (
            &no_code,
            None,
            format!("{envelope}: error_response without a non-zero integer code"),
        ),
        (&not_top, None, format!("unreadable response: {envelope}")),
    ] {
        let mut args = vec!["call", "taobao.time.get", "--url", url];
        args.extend(["--app-key", "k", "--secret", "s"]);
        args.extend(extra);
        let out = s.run_plain(&[], &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(stderr.contains("unreadable response: "), "{stderr}");
        assert!(stderr.contains(&shown), "{stderr}");
        if url == &bad_gateway {
            assert!(
                stderr.contains(&format!("the body starts: {upstream}")),
                "{stderr}"
            );
        }
    }
}

/// `sign` signs as the gateway verifies: an empty `sign_method` is none, so md5, and the gateway
/// accepts the signature; an unknown one is still noted as refused.
#[test]
fn sign_takes_an_empty_sign_method_for_md5_as_the_gateway_does() {
    use std::io::{Read, Write};
    let s = Scratch::new();
    let served = Served::start(&s, &["serve", "--sandbox", "--listen", "127.0.0.1:0"]);
    let url = url_in(&served.read_until("topgate sandbox listening on")[0]);
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let params = [
        ("method", "taobao.time.get"),
        ("app_key", "test"),
        ("v", "2.0"),
        ("format", "json"),
        ("timestamp", timestamp.as_str()),
        ("sign_method", ""),
    ];
    let mut args = vec![
        "sign".to_string(),
        "--explain".into(),
        "--secret".into(),
        "test".into(),
    ];
    for (name, value) in params {
        args.extend(["--param".into(), format!("{name}={value}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "no note: {stderr}");
    assert!(stdout.contains("sign_method: md5"), "{stdout}");
    let sign = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sign: "))
        .unwrap_or_else(|| panic!("a sign: {stdout}"));

    let form: Vec<String> = params
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .chain([format!("sign={sign}")])
        .collect();
    let form = form.join("&");
    let address = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut stream = std::net::TcpStream::connect(address).expect("connects");
    write!(
        stream,
        "POST /router/rest HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("\"time_get_response\""), "{answer}");
    served.terminate();

    let unknown: Vec<&str> = args
        .iter()
        .map(|a| match *a {
            "sign_method=" => "sign_method=sha1",
            other => other,
        })
        .collect();
    let out = s.run(&unknown);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the gateway refuses sign_method sha1 (code 25); signed with md5"),
        "{stderr}"
    );
}

#[test]
fn serve_honours_cli_disable_and_rotate_secret_within_the_cache_time() {
    let s = Scratch::new();
    s.ok(&[
        "app",
        "create",
        "--app-key",
        "k",
        "--secret",
        "cli-secret-5e1f0a9b",
    ]);
    let served = Served::start(&s, &["serve", "--listen", "127.0.0.1:0"]);
    let lines = served.read_until("topgate listening on");
    let url = url_in(&lines[0]);
    let call = |secret: &str| s.call_time_get(&url, "k", secret);
    let out = call("cli-secret-5e1f0a9b");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("time_get_response"));

    // Another process changed the app: the server trusts its cached copy for at most 1 s.
    let settle = |secret: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let out = call(secret);
            if out.status.code() == Some(3) || std::time::Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let rotated = s.json(&["app", "rotate-secret", "k"]);
    let out = settle("cli-secret-5e1f0a9b");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(call(new_secret).status.success());

    s.ok(&["app", "disable", "k"]);
    let out = settle(new_secret);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "TOP error 29: Invalid app Key; sub_code isv.appkey-not-exists; \
             sub_msg app key不存在或已停用; request_id "
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(new_secret), "{stderr}");
    served.terminate();
}

#[test]
fn bench_alternates_rounds_with_requests_of_their_own_and_reports_the_median_ratio() {
    let s = Scratch::new();
    let served = Served::start(&s, &["serve", "--sandbox", "--listen", "127.0.0.1:0"]);
    let url = url_in(&served.read_until("try it:")[0]);
    let before = s
        .json(&["admin", "right-orders", "--limit", "1000"])
        .as_array()
        .unwrap()
        .len();
    let report = s.json(&[
        "bench",
        "--url",
        &url,
        "--api",
        "pay",
        "--requests",
        "150",
        "--rounds",
        "2",
        "--connections",
        "4",
        "--json",
    ]);
    let phases: Vec<(String, u64, u64, u64)> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let field = |k: &str| p[k].as_u64().unwrap();
            (
                p["name"].as_str().unwrap().to_string(),
                field("round"),
                field("ok"),
                field("errors"),
            )
        })
        .collect();
    let expected: Vec<(String, u64, u64, u64)> =
        [("healthz", 1), ("pay", 1), ("healthz", 2), ("pay", 2)]
            .iter()
            .map(|(name, round)| (name.to_string(), *round, 150, 0))
            .collect();
    assert_eq!(phases, expected, "{report}");
    let by_round: Vec<f64> = report["ratio_to_ceiling_by_round"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_f64().unwrap())
        .collect();
    assert_eq!(by_round.len(), 2, "{report}");
    let median = report["ratio_to_ceiling"].as_f64().unwrap();
    assert!(
        (median - (by_round[0] + by_round[1]) / 2.0).abs() < 1e-9,
        "{report}"
    );
    // Every pay request of both rounds was a new notice: 300 new right orders, no replays.
    let after = s
        .json(&["admin", "right-orders", "--limit", "1000"])
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after - before, 300);

    // Phases of a fraction of a second: the ratio is printed with a note that it says little.
    let text = s.ok(&[
        "bench",
        "--url",
        &url,
        "--api",
        "lianbei",
        "--requests",
        "50",
        "--connections",
        "2",
    ]);
    assert!(text.contains("lianbei / healthz ceiling: "), "{text}");
    assert!(text.contains("note: a phase lasted under 1 s"), "{text}");

    // A phase without one successful answer (every call signed with a wrong secret) makes the
    // run fail, after its report.
    let args = format!(
        "bench --url {url} --api pay --requests 20 --connections 2 --secret wrong --no-ceiling"
    );
    let out = s.run(&args.split(' ').collect::<Vec<_>>());
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("top:25"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no successful answer in phase(s): pay"),
        "{stderr}"
    );
    served.terminate();
}

/// `sign --explain` gives the gateway's verdict on a request pasted whole: it signs with the
/// request's own `sign_method` (md5 when it has none, as the gateway does) unless
/// `--sign-method` says otherwise, and `--body` appends a batch's body. Every vector, its
/// `sign` given as a parameter, matches.
#[test]
fn sign_explain_checks_every_vector_with_the_requests_own_sign_method() {
    let s = Scratch::new();
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/signatures.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("vectors"))
        .expect("vectors JSON");
    for vector in doc["vectors"].as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let mut args = vec![
            "sign".to_string(),
            "--explain".into(),
            "--secret".into(),
            vector["secret"].as_str().unwrap().into(),
        ];
        let params = vector["params"].as_object().unwrap();
        if !params.contains_key("sign_method") {
            args.extend([
                "--sign-method".into(),
                vector["sign_method"].as_str().unwrap().into(),
            ]);
        }
        for (k, v) in params {
            args.extend(["--param".into(), format!("{k}={}", v.as_str().unwrap())]);
        }
        if let Some(body) = vector["body"].as_str() {
            args.extend(["--body".into(), body.into()]);
        }
        args.extend([
            "--param".into(),
            format!("sign={}", vector["sign"].as_str().unwrap()),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s.ok(&args);
        assert!(
            out.contains("the sign parameter given matches"),
            "{name}: {out}"
        );
        assert!(
            out.contains(&format!(
                "sign_method: {}",
                vector["sign_method"].as_str().unwrap()
            )),
            "{name}: {out}"
        );
    }
}

/// Text settings stay text whatever they look like: a numeric admin token and an `open_id_key`
/// of `true` from the environment work (they were read as a number and a boolean, which failed
/// every command and printed the token); a settings file's token of the wrong type is refused
/// without its value.
#[test]
fn text_settings_from_the_environment_are_text_whatever_they_look_like() {
    let s = Scratch::new();
    let token = "73915502846";
    let out = s
        .command()
        .env("TOPGATE_ADMIN_TOKEN", token)
        .env("TOPGATE_OPEN_ID_KEY", "true")
        .args(["app", "list"])
        .output()
        .expect("topgate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let served = Served::spawn(
        s.command()
            .env("TOPGATE_ADMIN_TOKEN", token)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::null()),
    );
    let url = url_in(&served.read_until("topgate listening on")[0]);
    let address = address_in(&url);
    let answer = exchange(
        &address,
        &format!("GET /admin/apps HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    served.terminate();

    std::fs::write(
        s.path().join("topgate.toml"),
        format!("admin_token = {token}\n"),
    )
    .unwrap();
    let stderr = failed_saying(&s.run(&["app", "list"]));
    assert!(stderr.contains("`admin_token` must be text"), "{stderr}");
    assert!(!stderr.contains(token), "{stderr}");
}

/// On SIGTERM the event dispatcher stops claiming work at once, not only once the server has
/// let its calls in flight finish: a client still sending its body keeps the server draining
/// (up to the read timeout), and the dispatcher has stopped meanwhile (docs/events.md,
/// "Shutdown").
#[test]
fn sigterm_stops_the_dispatcher_while_calls_in_flight_still_drain() {
    use std::io::Write;
    let s = Scratch::new();
    let log = s.path().join("serve.log");
    let served = Served::start_logging(&s, &["serve", "--listen", "127.0.0.1:0"], &log);
    let url = url_in(&served.read_until("topgate listening on")[0]);
    let address = address_in(&url);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read_log().contains("event dispatcher started") {
        assert!(Instant::now() < deadline, "no dispatcher: {}", read_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A call whose body never comes in whole.
    let mut slow = std::net::TcpStream::connect(&address).expect("connects");
    write!(
        slow,
        "POST /router/rest HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nmethod="
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = served.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read_log().contains("event dispatcher stopped") {
        assert!(
            Instant::now() < deadline,
            "the dispatcher still runs after SIGTERM: {}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut served = served;
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "the call in flight is still waited for"
    );
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The operators' audit trail: an admin change is logged with its method, path and status, a
/// refused token at warn; neither the token nor the body (a secret) ever is.
#[test]
fn admin_changes_and_refused_tokens_are_logged_without_secrets() {
    let s = Scratch::new();
    let log = s.path().join("serve.log");
    let token = "admin-token-5b7e9c1d";
    let served = Served::spawn(
        s.command()
            .env("TOPGATE_LOG", "info")
            .env("TOPGATE_ADMIN_TOKEN", token)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let url = url_in(&served.read_until("topgate listening on")[0]);
    let address = address_in(&url);
    let post = |bearer: &str, path: &str, body: &str| {
        exchange(
            &address,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let app_secret = "app-secret-0c4f8a2e6b";
    let body = format!(r#"{{"app_key": "logged-app", "secret": "{app_secret}"}}"#);
    assert!(post(token, "/admin/apps", &body).starts_with("HTTP/1.1 200"));
    assert!(post("wrong-token-1234", "/admin/users", "{}").starts_with("HTTP/1.1 401"));
    assert!(post("wrong-token-1234", "/admin/no-such", "{}").starts_with("HTTP/1.1 401"));
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_log().matches("admin request refused").count() < 2 {
        assert!(Instant::now() < deadline, "{}", read_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = read_log();
    let change = text
        .lines()
        .find(|l| l.contains("admin request") && l.contains("/admin/apps"))
        .unwrap_or_else(|| panic!("no line for the change: {text}"));
    assert!(
        change.contains("POST") && change.contains("200"),
        "{change}"
    );
    assert!(text
        .lines()
        .any(|l| l.contains("refused") && l.contains("/admin/users") && l.contains("WARN")));
    for secret in [token, app_secret, "wrong-token-1234"] {
        assert!(!text.contains(secret), "{secret} in the log: {text}");
    }
    served.terminate();
}

/// An empty database URL (an empty variable in an env file, say) or `:memory:` is refused:
/// SQLite read it as a private database of each connection, so the server answered successes
/// for changes that its readers never saw and a restart lost.
#[test]
fn a_database_url_that_names_no_file_is_refused() {
    let s = Scratch::new();
    for (env, args) in [
        (vec![("TOPGATE_DATABASE_URL", "")], vec!["app", "list"]),
        (vec![], vec!["--database-url", "", "app", "list"]),
        (
            vec![],
            vec![
                "--database-url",
                "sqlite://",
                "serve",
                "--listen",
                "127.0.0.1:0",
            ],
        ),
        (
            vec![],
            vec!["--database-url", "sqlite://:memory:", "app", "list"],
        ),
    ] {
        let stderr = failed_saying(&s.run_plain(&env, &args));
        assert!(stderr.contains("names no file"), "{args:?}: {stderr}");
    }
}

/// A database migrated by a newer topgate is not opened by an older one (say, after a
/// rollback of the binary): the command stops, saying so.
#[test]
fn a_database_from_a_newer_topgate_is_not_opened() {
    let s = Scratch::new();
    s.ok(&["app", "list"]);
    let file = s.path().join("x.db");
    let conn = rusqlite::Connection::open(&file).expect("the database");
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
        [],
    )
    .expect("a newer migration");
    drop(conn);
    let stderr = failed_saying(&s.run(&["app", "list"]));
    assert!(
        stderr.contains("schema is at version 999, from a newer topgate"),
        "{stderr}"
    );
}

/// A misspelt log setting is named on stderr, and the command goes on with the default.
#[test]
fn misspelt_log_settings_are_named_not_ignored() {
    let s = Scratch::new();
    let out = s.run_plain(
        &[
            ("TOPGATE_LOG", "topgate=loud"),
            ("TOPGATE_LOG_FORMAT", "jsn"),
        ],
        &["sign", "--secret", "x", "--param", "a=b"],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("note: TOPGATE_LOG is not a log filter"),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"note: TOPGATE_LOG_FORMAT is json or text, not "jsn""#),
        "{stderr}"
    );
}
