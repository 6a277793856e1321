//! Settings, layered: built-in defaults, then `topgate.toml` (or the file `--config` names), then
//! `TOPGATE_*` environment variables, then command-line flags.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Where the embedded database lives when nothing else is said.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://.topgate/topgate.db";
/// The sandbox's own database, kept across restarts.
pub const DEFAULT_SANDBOX_DATABASE_URL: &str = "sqlite://.topgate/sandbox.db";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub listen: String,
    /// `None` means the default for the mode (sandbox or not).
    pub database_url: Option<String>,
    /// Allowed clock skew of `timestamp`, either side.
    pub timestamp_window_secs: i64,
    /// Also accept a `yyyy-MM-dd HH:mm:ss` timestamp written in another zone than GMT+8 (the Go
    /// and Node clients format in their machine's zone): off by default, as on TOP.
    pub timestamp_any_zone: bool,
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
    /// How long a client may take to send a request's head, and then its body; also how long
    /// an idle keep-alive connection stays open. A slower client's connection is closed.
    pub read_timeout_secs: u64,
    /// Bearer token of the admin API; the admin API is off when unset.
    pub admin_token: Option<String>,
    /// ICCIDs: strict (19–20 digits, `89`, Luhn) or lenient (1–20 digits, as the doc examples).
    pub iccid_strict: bool,
    /// Key of the `open_id` derivation; sandbox default is fixed so ids are stable.
    pub open_id_key: String,
    /// How long apps and sessions read from the database are trusted: changes made by another
    /// process (the CLI, another node) take effect within this time; 0 reads them every call.
    pub auth_cache_ms: u64,
    /// Whether `topgate serve` also runs the event dispatcher (`topgate dispatch` runs only it).
    pub dispatcher: bool,
    /// Delivery of outbox events (`[events]`).
    pub events: crate::events::EventSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: None,
            timestamp_window_secs: 600,
            timestamp_any_zone: false,
            body_limit_bytes: 1024 * 1024,
            read_timeout_secs: 30,
            admin_token: None,
            iccid_strict: false,
            open_id_key: "topgate-open-id".into(),
            auth_cache_ms: 1000,
            dispatcher: true,
            events: crate::events::EventSettings::default(),
        }
    }
}

impl Settings {
    /// Loads the layers; `topgate.toml` is optional, but a file named explicitly must exist.
    /// Only the working directory's `topgate.toml` is read, never one of a parent directory
    /// (figment's `Toml::file` would search them): a stray file in `$HOME` or `/` must not
    /// quietly supply a `database_url` or an `admin_token`.
    pub fn load(config_file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        if let Some(file) = config_file.filter(|f| !f.is_file()) {
            return Err(Box::new(figment::Error::from(format!(
                "the settings file {} does not exist",
                file.display()
            ))));
        }
        let file = config_file.or_else(|| Some(Path::new("topgate.toml")).filter(|f| f.is_file()));
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = Env::prefixed("TOPGATE_");
        figment = figment.merge(env.clone().ignore(TEXT_SETTINGS));
        for (key, value) in env.only(TEXT_SETTINGS).iter() {
            figment = figment.merge(Serialized::default(key.as_str(), value));
        }
        let settings: Settings = figment.extract().map_err(hide_secret_values)?;
        settings.check_ranges()?;
        if let Some(file) = file {
            reject_unknown_keys(file)?;
        }
        Ok(settings)
    }

    /// Values of the right type that no deployment means, refused at start rather than
    /// refusing every call: a window of -5 s, a body limit of 0 bytes, a read timeout of 0 s.
    fn check_ranges(&self) -> Result<(), Box<figment::Error>> {
        let checks = [
            (
                "timestamp_window_secs",
                self.timestamp_window_secs,
                1,
                MAX_TIMESTAMP_WINDOW_SECS,
            ),
            (
                "body_limit_bytes",
                i64::try_from(self.body_limit_bytes).unwrap_or(i64::MAX),
                MIN_BODY_LIMIT_BYTES,
                i64::MAX,
            ),
            (
                "read_timeout_secs",
                i64::try_from(self.read_timeout_secs).unwrap_or(i64::MAX),
                1,
                MAX_READ_TIMEOUT_SECS,
            ),
        ];
        for (key, value, least, most) in checks {
            if !(least..=most).contains(&value) {
                let range = if most == i64::MAX {
                    format!("at least {least}")
                } else {
                    format!("{least} to {most}")
                };
                return Err(Box::new(figment::Error::from(format!(
                    "the setting `{key}` must be {range}, not {value}"
                ))));
            }
        }
        Ok(())
    }

    pub fn database_url(&self, sandbox: bool) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            if sandbox {
                DEFAULT_SANDBOX_DATABASE_URL.into()
            } else {
                DEFAULT_DATABASE_URL.into()
            }
        })
    }
}

/// A timestamp may be a year off at most: past that no clock check is left.
const MAX_TIMESTAMP_WINDOW_SECS: i64 = 365 * 24 * 3600;
/// The smallest body limit: a signed call's system parameters alone take a few hundred bytes.
const MIN_BODY_LIMIT_BYTES: i64 = 1024;
/// A day: longer, and a client that never finishes its request holds a connection for ever.
const MAX_READ_TIMEOUT_SECS: i64 = 24 * 3600;

/// Settings that are text whatever they look like. figment's `Env` reads `123456` as a number
/// and `true` as a boolean, and a token or key of that shape then failed every command, with
/// the value in the message; these variables are taken as the text they hold.
const TEXT_SETTINGS: &[&str] = &["listen", "database_url", "admin_token", "open_id_key"];

/// Settings whose values are never shown, not even in an error about their type.
const SECRET_SETTINGS: &[&str] = &["admin_token", "open_id_key"];

/// `error` as it is, unless it is about a secret setting: then one that names the setting
/// without its value (figment's type errors quote the value found).
fn hide_secret_values(error: figment::Error) -> Box<figment::Error> {
    let secret = error.clone().into_iter().find_map(|e| {
        SECRET_SETTINGS
            .iter()
            .find(|key| e.path.first().is_some_and(|p| p.eq_ignore_ascii_case(key)))
    });
    Box::new(match secret {
        Some(key) => figment::Error::from(format!(
            "the setting `{key}` must be text (in a settings file, a quoted string); its value is not shown"
        )),
        None => error,
    })
}

/// A misspelt key in the file would otherwise leave its setting at the default without a word.
/// Only the file is checked: `TOPGATE_*` variables that are no settings (`TOPGATE_LOG`, a test's
/// `TOPGATE_TEST_DATABASE`) must stay harmless. serde_ignored reports what `Settings`' own
/// `Deserialize` skips, nested tables included, so no list of keys is kept by hand.
fn reject_unknown_keys(file: &Path) -> Result<(), Box<figment::Error>> {
    let file_only = Figment::from(Toml::file_exact(file));
    let table: figment::value::Value = file_only.extract().map_err(Box::new)?;
    let mut unknown = Vec::new();
    serde_ignored::deserialize::<_, _, Settings>(&table, |path| unknown.push(format!("`{path}`")))
        .map_err(Box::new)?;
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Box::new(figment::Error::from(format!(
        "unknown {} {} in the settings file {}",
        if unknown.len() == 1 { "key" } else { "keys" },
        unknown.join(", "),
        file.display()
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Settings, Box<figment::Error>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("topgate.toml");
        std::fs::write(&file, text).expect("settings file");
        Settings::load(Some(&file))
    }

    #[test]
    fn every_known_key_is_accepted() {
        let settings = load_text(
            "listen = \"127.0.0.1:9\"\nadmin_token = \"t\"\n[events]\nretry_schedule_ms = [1, 2]\n",
        )
        .expect("valid settings");
        assert_eq!(settings.listen, "127.0.0.1:9");
        assert_eq!(settings.events.retry_schedule_ms, [1, 2]);
    }

    #[test]
    fn unknown_keys_are_named_with_their_table_and_the_file() {
        let err = load_text("listen_adress = \"0.0.0.0:80\"\n[events]\nretry_jiter = 0.5\n")
            .expect_err("typos are refused")
            .to_string();
        assert!(
            err.contains("unknown keys `events.retry_jiter`, `listen_adress`"),
            "{err}"
        );
        assert!(err.contains("topgate.toml"), "{err}");
    }

    #[test]
    fn values_no_deployment_means_are_refused_naming_the_setting() {
        for (text, error) in [
            (
                "timestamp_window_secs = -5",
                "the setting `timestamp_window_secs` must be 1 to 31536000, not -5",
            ),
            (
                "body_limit_bytes = 0",
                "the setting `body_limit_bytes` must be at least 1024, not 0",
            ),
            (
                "read_timeout_secs = 0",
                "the setting `read_timeout_secs` must be 1 to 86400, not 0",
            ),
        ] {
            let err = load_text(text).expect_err(text).to_string();
            assert!(err.contains(error), "{err}");
        }
        let edge = load_text("timestamp_window_secs = 1\nbody_limit_bytes = 1024\n");
        assert!(edge.is_ok(), "{edge:?}");
    }

    #[test]
    fn an_unknown_table_is_refused() {
        let err = load_text("[event]\npoll_interval_ms = 5\n")
            .expect_err("a misspelt table is refused")
            .to_string();
        assert!(err.contains("unknown key `event`"), "{err}");
    }
}
