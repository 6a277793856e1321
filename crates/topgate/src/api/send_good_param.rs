//! Parser for the `send_good_param` string of
//! `alibaba.base.order.supplier.notify`, in which a carrier reports the SIM
//! cards it shipped, e.g.
//! `iccid=888|TB1,999|TB2;invalidDate=20180909$12:33|TB1,20180909$12:33|TB2`.
//!
//! This module owns the syntax and the per-card consistency of that string
//! (pairing ICCIDs and activation deadlines by tag) and the ICCID format check
//! shared with the API's top-level `iccid` field. Checks that need the order
//! (tag number above the quantity, deadline already past) belong to the caller.
//!
//! Design choices:
//! - Validation is strict and all-or-nothing: any malformed piece rejects the
//!   whole string with a short English reason naming the offending token, since
//!   a half-understood shipment report is worse than a clear error.
//! - Full-width separators (`；` `，` `｜` `＝`) are rejected rather than
//!   normalised, so the carrier learns that its input is wrong instead of the
//!   gateway guessing.
//! - Tags are `TB` + a positive decimal number without leading zeros (`TB01`
//!   is rejected) so that each card has exactly one spelling and duplicate
//!   detection cannot be dodged.
//! - Keys are case-sensitive: `ICCID` is an unknown key, kept verbatim, not a
//!   second spelling of `iccid`.
//! - Unknown keys are kept with their raw value text (trimmed) without any
//!   parsing, so their value may be empty or contain `,` `|` `=`.
//! - A date without a time means the end of that day (23:59:59). Only `$`
//!   separates date and time; a literal space there is rejected. Times are
//!   wall-clock GMT+8 and returned as a `PrimitiveDateTime` without offset.
//! - Length is limited to [`MAX_LEN`] chars (not bytes), checked before
//!   anything else so oversized input is never scanned further.

use std::fmt;

use time::{Date, Month, PrimitiveDateTime, Time};

/// Longest accepted `send_good_param`, in chars.
pub const MAX_LEN: usize = 4000;

const ICCID_KEY: &str = "iccid";
const DEADLINE_KEY: &str = "invalidDate";
/// Longest token quoted in an error, in chars; keeps messages short even for
/// a 4000-char garbage token.
const MAX_SHOWN: usize = 32;

/// One shipped card: the ICCID reported under a tag and, if given, the
/// deadline by which it must be activated (GMT+8 wall-clock time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSpec {
    pub tag: u32,
    pub iccid: String,
    pub activate_deadline: Option<PrimitiveDateTime>,
}

impl CardSpec {
    /// The tag as written in the input, e.g. `TB1`.
    pub fn tag_name(&self) -> String {
        format!("TB{}", self.tag)
    }
}

/// A successfully parsed `send_good_param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendGoodParam {
    /// Sorted by tag ascending.
    pub cards: Vec<CardSpec>,
    /// Unknown keys in input order, with the trimmed raw text after `=`.
    pub other_sections: Vec<(String, String)>,
}

/// Why a `send_good_param` was rejected; the string is a short English reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendGoodParamError(pub String);

impl fmt::Display for SendGoodParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SendGoodParamError {}

/// How strictly ICCIDs are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IccidMode {
    /// 1 to 20 ASCII digits: sandbox and test data often use short fakes.
    #[default]
    Lenient,
    /// 19 or 20 ASCII digits, starting with `89` (telecom industry
    /// identifier), with a valid Luhn check digit.
    Strict,
}

/// Parses a `send_good_param`. Empty or whitespace-only input is treated as
/// absent and gives `Ok(None)`.
pub fn parse(input: &str, mode: IccidMode) -> Result<Option<SendGoodParam>, SendGoodParamError> {
    // Byte length bounds char count from above, so the count is only needed
    // when the cheap check is inconclusive.
    if input.len() > MAX_LEN {
        let chars = input.chars().count();
        if chars > MAX_LEN {
            return Err(err(format!("too long: {chars} chars, max {MAX_LEN}")));
        }
    }
    if input.trim().is_empty() {
        return Ok(None);
    }
    if let Some(c) = input.chars().find(|c| full_width_ascii(*c).is_some()) {
        let ascii = full_width_ascii(c).unwrap_or('?');
        return Err(err(format!(
            "full-width separator '{c}' not allowed, use ASCII '{ascii}'"
        )));
    }

    let mut seen_keys: Vec<&str> = Vec::new();
    let mut iccids: Option<Vec<(u32, String)>> = None;
    let mut deadlines: Option<Vec<(u32, PrimitiveDateTime)>> = None;
    let mut other_sections = Vec::new();

    for section in input.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = section.split_once('=') else {
            return Err(err(format!("section without '=': '{}'", show(section))));
        };
        let (key, value) = (key.trim(), value.trim());
        if !is_key_syntax(key) {
            return Err(err(format!("invalid key '{}'", show(key))));
        }
        if seen_keys.contains(&key) {
            return Err(err(format!("duplicate key {}", show(key))));
        }
        seen_keys.push(key);
        match key {
            ICCID_KEY => {
                let entries = parse_entries(key, value, |v, tag| {
                    if is_valid_iccid(v, mode) {
                        Ok(v.to_owned())
                    } else {
                        let expected = match mode {
                            IccidMode::Lenient => "1-20 digits",
                            IccidMode::Strict => "19-20 digits starting with 89, valid Luhn",
                        };
                        Err(err(format!(
                            "invalid ICCID '{}' for TB{tag} (expected {expected})",
                            show(v)
                        )))
                    }
                })?;
                iccids = Some(entries);
            }
            DEADLINE_KEY => {
                deadlines = Some(parse_entries(key, value, |v, tag| {
                    parse_deadline(v).ok_or_else(|| {
                        err(format!(
                            "invalid invalidDate '{}' for TB{tag} (expected yyyyMMdd[$HH:mm[:ss]])",
                            show(v)
                        ))
                    })
                })?);
            }
            _ => other_sections.push((key.to_owned(), value.to_owned())),
        }
    }

    let Some(iccids) = iccids else {
        return Err(err("missing iccid section".to_owned()));
    };
    let deadlines = deadlines.unwrap_or_default();

    // Quadratic checks are fine: MAX_LEN caps the entries at ~1000.
    for (i, (tag, iccid)) in iccids.iter().enumerate() {
        if let Some((other, _)) = iccids[..i].iter().find(|(_, v)| v == iccid) {
            return Err(err(format!(
                "ICCID {} used by both TB{other} and TB{tag}",
                show(iccid)
            )));
        }
    }
    if let Some((tag, _)) = deadlines
        .iter()
        .find(|(tag, _)| !iccids.iter().any(|(t, _)| t == tag))
    {
        return Err(err(format!("invalidDate for TB{tag} has no iccid")));
    }

    let mut cards: Vec<CardSpec> = iccids
        .into_iter()
        .map(|(tag, iccid)| CardSpec {
            tag,
            iccid,
            activate_deadline: deadlines.iter().find(|(t, _)| *t == tag).map(|(_, d)| *d),
        })
        .collect();
    cards.sort_by_key(|c| c.tag);
    Ok(Some(SendGoodParam {
        cards,
        other_sections,
    }))
}

/// Checks an ICCID as given, without trimming (see [`IccidMode`]).
pub fn is_valid_iccid(iccid: &str, mode: IccidMode) -> bool {
    // `is_ascii_digit`, not `is_numeric`: other scripts' digits are not ICCIDs.
    if !iccid.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match mode {
        IccidMode::Lenient => (1..=20).contains(&iccid.len()),
        IccidMode::Strict => {
            (19..=20).contains(&iccid.len()) && iccid.starts_with("89") && luhn_ok(iccid)
        }
    }
}

/// `digits` must be ASCII digits only.
fn luhn_ok(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn err(reason: String) -> SendGoodParamError {
    SendGoodParamError(reason)
}

/// Shortens a token for quoting in an error, cutting on a char boundary.
fn show(token: &str) -> String {
    match token.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", token.get(..cut).unwrap_or_default()),
        None => token.to_owned(),
    }
}

fn full_width_ascii(c: char) -> Option<char> {
    match c {
        '；' => Some(';'),
        '，' => Some(','),
        '｜' => Some('|'),
        '＝' => Some('='),
        _ => None,
    }
}

fn is_key_syntax(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `TB<n>`, n positive without leading zeros.
fn parse_tag(tag: &str) -> Option<u32> {
    let digits = tag.strip_prefix("TB")?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Empty and overflowing numbers fail here.
    digits.parse().ok()
}

/// Splits a known key's value into `(tag, parsed value)` entries.
fn parse_entries<T>(
    key: &str,
    value: &str,
    parse_value: impl Fn(&str, u32) -> Result<T, SendGoodParamError>,
) -> Result<Vec<(u32, T)>, SendGoodParamError> {
    let raw: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if raw.is_empty() {
        return Err(err(format!("no entries in {key}")));
    }
    // A lone untagged entry can only mean the first (and only) card.
    let untagged_ok = raw.len() == 1;
    let mut out: Vec<(u32, T)> = Vec::with_capacity(raw.len());
    for entry in raw {
        let mut parts = entry.split('|');
        let val = parts.next().unwrap_or_default().trim();
        let tag_text = parts.next().map(str::trim);
        if parts.next().is_some() {
            return Err(err(format!(
                "more than one '|' in {key} entry '{}'",
                show(entry)
            )));
        }
        let tag = match tag_text {
            None if untagged_ok => 1,
            None => {
                return Err(err(format!(
                    "missing tag in {key} entry '{}' (needed when there are several entries)",
                    show(entry)
                )))
            }
            Some(t) => parse_tag(t).ok_or_else(|| {
                err(format!(
                    "invalid tag '{}' in {key} (expected TB1, TB2, ... without leading zeros)",
                    show(t)
                ))
            })?,
        };
        if val.is_empty() {
            return Err(err(format!("empty value for TB{tag} in {key}")));
        }
        if out.iter().any(|(t, _)| *t == tag) {
            return Err(err(format!("duplicate tag TB{tag} in {key}")));
        }
        out.push((tag, parse_value(val, tag)?));
    }
    Ok(out)
}

/// Parses `yyyyMMdd[$HH:mm[:ss]]`; a bare date means 23:59:59 that day.
fn parse_deadline(value: &str) -> Option<PrimitiveDateTime> {
    let (date_text, time_text) = match value.split_once('$') {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    if date_text.len() != 8 {
        return None;
    }
    let year = fixed_digits(date_text.get(0..4)?)?;
    let month = fixed_digits(date_text.get(4..6)?)?;
    let day = fixed_digits(date_text.get(6..8)?)?;
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;

    let time = match time_text {
        None => Time::from_hms(23, 59, 59).ok()?,
        Some(t) => {
            let mut fields = t.split(':');
            let hour = two_digits(fields.next()?)?;
            let minute = two_digits(fields.next()?)?;
            let second = match fields.next() {
                Some(s) => two_digits(s)?,
                None => 0,
            };
            if fields.next().is_some() {
                return None;
            }
            Time::from_hms(hour, minute, second).ok()?
        }
    };
    Some(PrimitiveDateTime::new(date, time))
}

/// ASCII digits only, no sign: `str::parse` alone would accept `+1`.
fn fixed_digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn two_digits(text: &str) -> Option<u8> {
    if text.len() != 2 {
        return None;
    }
    u8::try_from(fixed_digits(text)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn ok(input: &str) -> SendGoodParam {
        match parse(input, IccidMode::Lenient) {
            Ok(Some(p)) => p,
            other => panic!("expected Ok(Some) for {input:?}, got {other:?}"),
        }
    }

    fn bad(input: &str) -> String {
        match parse(input, IccidMode::Lenient) {
            Err(e) => e.to_string(),
            other => panic!("expected Err for {input:?}, got {other:?}"),
        }
    }

    fn card(tag: u32, iccid: &str, deadline: Option<PrimitiveDateTime>) -> CardSpec {
        CardSpec {
            tag,
            iccid: iccid.to_owned(),
            activate_deadline: deadline,
        }
    }

    #[test]
    fn doc_example() {
        let p = ok("iccid=888|TB1,999|TB2;invalidDate=20180909$12:33|TB1,20180909$12:33|TB2");
        assert_eq!(
            p.cards,
            vec![
                card(1, "888", Some(datetime!(2018-09-09 12:33))),
                card(2, "999", Some(datetime!(2018-09-09 12:33))),
            ]
        );
        assert!(p.other_sections.is_empty());
        assert_eq!(p.cards[1].tag_name(), "TB2");
    }

    #[test]
    fn empty_and_whitespace_are_absent() {
        assert_eq!(parse("", IccidMode::Lenient), Ok(None));
        assert_eq!(parse("  \t\n ", IccidMode::Strict), Ok(None));
    }

    #[test]
    fn tokens_are_trimmed() {
        let p = ok(" iccid = 888 | TB2 , 999|TB1 ; invalidDate = 20180909$12:33 | TB1 ");
        assert_eq!(
            p.cards,
            vec![
                card(1, "999", Some(datetime!(2018-09-09 12:33))),
                card(2, "888", None),
            ]
        );
    }

    #[test]
    fn empty_pieces_ignored() {
        let p = ok(";;iccid=888|TB1,,999|TB2,;;invalidDate=20180909|TB2,;");
        assert_eq!(
            p.cards,
            vec![
                card(1, "888", None),
                card(2, "999", Some(datetime!(2018-09-09 23:59:59))),
            ]
        );
    }

    #[test]
    fn section_without_equals() {
        assert!(bad("iccid=888|TB1;invalidDate").contains("without '='"));
        assert!(bad("iccid").contains("without '='"));
    }

    #[test]
    fn duplicate_key() {
        assert_eq!(bad("iccid=888|TB1;iccid=999|TB2"), "duplicate key iccid");
        assert_eq!(bad("iccid=8;foo=1;foo=2"), "duplicate key foo");
    }

    #[test]
    fn unknown_key_kept_verbatim() {
        let p = ok("note = a|b,c=d ;iccid=888;ICCID=x;ext_2=");
        assert_eq!(
            p.other_sections,
            vec![
                ("note".to_owned(), "a|b,c=d".to_owned()),
                ("ICCID".to_owned(), "x".to_owned()),
                ("ext_2".to_owned(), String::new()),
            ]
        );
        assert_eq!(p.cards, vec![card(1, "888", None)]);
    }

    #[test]
    fn unknown_key_with_bad_syntax() {
        assert!(bad("iccid=888;1abc=x").contains("invalid key '1abc'"));
        assert!(bad("iccid=888;a-b=x").contains("invalid key"));
        assert!(bad("iccid=888;=x").contains("invalid key ''"));
        assert!(bad("iccid=888;键=x").contains("invalid key"));
    }

    #[test]
    fn single_untagged_entry_is_tb1() {
        let p = ok("iccid=888;invalidDate=20180909$08:00");
        assert_eq!(
            p.cards,
            vec![card(1, "888", Some(datetime!(2018-09-09 08:00)))]
        );
    }

    #[test]
    fn untagged_among_several_is_invalid() {
        assert!(bad("iccid=888,999|TB2").contains("missing tag"));
        assert!(bad("iccid=888|TB1,999").contains("missing tag"));
        assert!(bad("iccid=888|TB1,999|TB2;invalidDate=20180909,20180910").contains("missing tag"));
    }

    #[test]
    fn duplicate_tag() {
        assert_eq!(bad("iccid=888|TB1,999|TB1"), "duplicate tag TB1 in iccid");
        assert_eq!(
            bad("iccid=888|TB1;invalidDate=20180909|TB1,20180910|TB1"),
            "duplicate tag TB1 in invalidDate"
        );
    }

    #[test]
    fn same_iccid_under_two_tags() {
        assert_eq!(
            bad("iccid=888|TB1,888|TB2"),
            "ICCID 888 used by both TB1 and TB2"
        );
    }

    #[test]
    fn orphan_deadline() {
        assert_eq!(
            bad("iccid=888|TB1;invalidDate=20180909|TB1,20180909|TB2"),
            "invalidDate for TB2 has no iccid"
        );
        // Order of sections must not matter.
        assert_eq!(
            bad("invalidDate=20180909|TB3;iccid=888|TB1"),
            "invalidDate for TB3 has no iccid"
        );
    }

    #[test]
    fn iccid_without_deadline_allowed() {
        let p = ok("iccid=888|TB1,999|TB2;invalidDate=20180909$12:00|TB2");
        assert_eq!(p.cards[0].activate_deadline, None);
        assert_eq!(
            p.cards[1].activate_deadline,
            Some(datetime!(2018-09-09 12:00))
        );
    }

    #[test]
    fn bad_tags() {
        for tag in [
            "TB0",
            "TBx",
            "TB",
            "tb1",
            "TB-1",
            "TB01",
            "TB+1",
            "T B1",
            "TB99999999999",
            "TB１",
        ] {
            let msg = bad(&format!("iccid=888|{tag}"));
            assert!(msg.contains("invalid tag"), "{tag}: {msg}");
        }
        assert!(bad("iccid=888|").contains("invalid tag ''"));
        // Large but representable numbers are fine; the quantity check is the caller's.
        assert_eq!(ok("iccid=888|TB4294967295").cards[0].tag, u32::MAX);
    }

    #[test]
    fn several_pipes() {
        assert!(bad("iccid=888|TB1|TB2").contains("more than one '|'"));
        assert!(bad("iccid=888||TB1").contains("more than one '|'"));
    }

    #[test]
    fn date_only_is_end_of_day() {
        let p = ok("iccid=888;invalidDate=20240229");
        assert_eq!(
            p.cards[0].activate_deadline,
            Some(datetime!(2024-02-29 23:59:59))
        );
    }

    #[test]
    fn time_with_and_without_seconds() {
        let p = ok("iccid=1|TB1,2|TB2;invalidDate=20180909$12:33|TB1,20180909$00:00:07|TB2");
        assert_eq!(
            p.cards[0].activate_deadline,
            Some(datetime!(2018-09-09 12:33:00))
        );
        assert_eq!(
            p.cards[1].activate_deadline,
            Some(datetime!(2018-09-09 00:00:07))
        );
    }

    #[test]
    fn bad_dates_and_times() {
        for date in [
            "20180909$24:00",
            "20180909$12:60",
            "20180909$12:00:60",
            "20180230",
            "20181301",
            "20180900",
            "2018090",
            "201809091",
            "20180909$",
            "20180909$1:00",
            "20180909$12",
            "20180909$12:00:00:00",
            "20180909$12:3３",
            "20180909 12:33",
            "2018-09-09",
            "+2018090",
            "20180909$$12:00",
            "２０１８０９０９",
        ] {
            let msg = bad(&format!("iccid=888;invalidDate={date}"));
            assert!(msg.contains("invalid invalidDate"), "{date}: {msg}");
        }
    }

    #[test]
    fn full_width_separators_rejected() {
        for (input, c) in [
            ("iccid=888|TB1；invalidDate=20180909|TB1", '；'),
            ("iccid=888|TB1，999|TB2", '，'),
            ("iccid=888｜TB1", '｜'),
            ("iccid＝888", '＝'),
            ("iccid=888;note=注意；", '；'),
        ] {
            let msg = bad(input);
            assert!(msg.contains("full-width") && msg.contains(c), "{msg}");
        }
    }

    #[test]
    fn missing_iccid_section() {
        assert_eq!(bad("invalidDate=20180909"), "missing iccid section");
        assert_eq!(bad(";;"), "missing iccid section");
        assert_eq!(bad("foo=bar"), "missing iccid section");
    }

    #[test]
    fn too_long() {
        let long = format!("iccid=888;note={}", "x".repeat(MAX_LEN));
        assert!(bad(&long).contains("too long"));
        // Exactly MAX_LEN chars of multi-byte text is accepted: chars, not bytes.
        let prefix = "iccid=888;note=";
        let fits = format!("{prefix}{}", "注".repeat(MAX_LEN - prefix.len()));
        assert_eq!(fits.chars().count(), MAX_LEN);
        assert_eq!(ok(&fits).cards.len(), 1);
        assert!(bad(&format!("{fits}x")).contains("too long"));
    }

    #[test]
    fn empty_values() {
        assert_eq!(bad("iccid=|TB1"), "empty value for TB1 in iccid");
        assert_eq!(
            bad("iccid=888|TB1;invalidDate= |TB1"),
            "empty value for TB1 in invalidDate"
        );
        assert_eq!(bad("iccid="), "no entries in iccid");
        assert_eq!(bad("iccid=888;invalidDate=,"), "no entries in invalidDate");
    }

    #[test]
    fn iccid_lenient_and_strict() {
        assert!(is_valid_iccid("888", IccidMode::Lenient));
        assert!(is_valid_iccid("12345678901234567890", IccidMode::Lenient));
        assert!(!is_valid_iccid("123456789012345678901", IccidMode::Lenient));
        assert!(!is_valid_iccid("", IccidMode::Lenient));
        assert!(!is_valid_iccid(" 888", IccidMode::Lenient));
        assert!(!is_valid_iccid("８８８", IccidMode::Lenient));
        assert!(!is_valid_iccid("88a", IccidMode::Lenient));

        // 19 and 20 digits with valid Luhn check digits.
        assert!(is_valid_iccid("8986001234567890120", IccidMode::Strict));
        assert!(is_valid_iccid("89860012345678901238", IccidMode::Strict));
        assert!(!is_valid_iccid("89860012345678901237", IccidMode::Strict));
        assert!(!is_valid_iccid("888", IccidMode::Strict));
        // Valid Luhn but wrong prefix.
        assert!(!is_valid_iccid("79927398713000000008", IccidMode::Strict));

        assert!(parse("iccid=888", IccidMode::Strict)
            .unwrap_err()
            .0
            .contains("invalid ICCID '888' for TB1"));
        assert!(parse("iccid=8986001234567890120", IccidMode::Strict).is_ok_and(|p| p.is_some()));
        assert!(bad("iccid=88a|TB1").contains("invalid ICCID '88a'"));
    }

    #[test]
    fn long_tokens_are_shortened_in_errors() {
        let msg = bad(&format!("iccid={}", "注".repeat(100)));
        assert!(msg.contains('…') && msg.chars().count() < 100, "{msg}");
    }

    #[test]
    fn error_is_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(SendGoodParamError("x".to_owned()));
        assert_eq!(e.to_string(), "x");
    }

    /// Appends a valid Luhn check digit.
    fn with_luhn(body: &str) -> String {
        (0..=9)
            .map(|d| format!("{body}{d}"))
            .find(|s| luhn_ok(s))
            .unwrap_or_default()
    }

    type GenTime = Option<(u8, u8, Option<u8>)>;

    #[derive(Debug, Clone)]
    struct GenCard {
        tag: u32,
        iccid: String,
        deadline: Option<(i32, u8, u8, GenTime)>,
    }

    fn gen_deadline() -> impl Strategy<Value = Option<(i32, u8, u8, GenTime)>> {
        proptest::option::of((
            1970i32..=2099,
            1u8..=12,
            1u8..=31,
            proptest::option::of((0u8..24, 0u8..60, proptest::option::of(0u8..60))),
        ))
        .prop_map(|d| {
            // Clamp the day so every generated date exists.
            d.map(|(y, m, day, t)| {
                let month = Month::try_from(m).unwrap_or(Month::January);
                (y, m, day.min(month.length(y)), t)
            })
        })
    }

    fn gen_cards() -> impl Strategy<Value = Vec<GenCard>> {
        (1usize..=5).prop_flat_map(|n| {
            (
                proptest::collection::btree_set(1u32..50, n),
                proptest::collection::btree_set("[0-9]{1,20}", n),
                proptest::collection::vec(gen_deadline(), n),
            )
                .prop_map(|(tags, iccids, deadlines)| {
                    tags.into_iter()
                        .zip(iccids)
                        .zip(deadlines)
                        .map(|((tag, iccid), deadline)| GenCard {
                            tag,
                            iccid,
                            deadline,
                        })
                        .collect::<Vec<_>>()
                })
                .prop_shuffle()
        })
    }

    fn sp() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(""), Just(" "), Just("  "), Just("\t")]
    }

    fn render_deadline((y, m, d, t): (i32, u8, u8, GenTime)) -> String {
        let date = format!("{y:04}{m:02}{d:02}");
        match t {
            None => date,
            Some((h, mi, None)) => format!("{date}${h:02}:{mi:02}"),
            Some((h, mi, Some(s))) => format!("{date}${h:02}:{mi:02}:{s:02}"),
        }
    }

    fn expected_deadline((y, m, d, t): (i32, u8, u8, GenTime)) -> Option<PrimitiveDateTime> {
        let date = Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()?;
        let time = match t {
            None => Time::from_hms(23, 59, 59),
            Some((h, mi, s)) => Time::from_hms(h, mi, s.unwrap_or(0)),
        }
        .ok()?;
        Some(PrimitiveDateTime::new(date, time))
    }

    /// Renders one key's section; a single entry may drop its tag.
    fn render_section(
        key: &str,
        entries: &[(u32, String)],
        omit_single_tag: bool,
        spaces: &[&str],
    ) -> String {
        let s = |i: usize| spaces.get(i % spaces.len().max(1)).copied().unwrap_or("");
        let body: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(i, (tag, v))| {
                if omit_single_tag && entries.len() == 1 {
                    format!("{}{v}{}", s(i), s(i + 1))
                } else {
                    format!("{}{v}{}|{}TB{tag}{}", s(i), s(i + 1), s(i + 2), s(i + 3))
                }
            })
            .collect();
        format!("{}{key}{}={}", s(0), s(1), body.join(","))
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = parse(&s, IccidMode::Lenient);
            let _ = parse(&s, IccidMode::Strict);
        }

        #[test]
        fn never_panics_on_near_grammar(
            s in "[a-zA-Z0-9 ;,|=$:TB_；，｜＝注😀]{0,80}"
        ) {
            let _ = parse(&s, IccidMode::Lenient);
            let _ = parse(&s, IccidMode::Strict);
        }

        #[test]
        fn never_panics_on_iccid_check(s in any::<String>()) {
            let _ = is_valid_iccid(&s, IccidMode::Lenient);
            let _ = is_valid_iccid(&s, IccidMode::Strict);
        }

        #[test]
        fn valid_inputs_roundtrip(
            cards in gen_cards(),
            deadline_first in any::<bool>(),
            omit_single_tag in any::<bool>(),
            trailing in prop_oneof![Just(""), Just(";"), Just(" ; ;")],
            extra in proptest::option::of(0usize..3),
            spaces in proptest::collection::vec(sp(), 1..8),
        ) {
            let iccid_entries: Vec<(u32, String)> =
                cards.iter().map(|c| (c.tag, c.iccid.clone())).collect();
            let deadline_entries: Vec<(u32, String)> = cards
                .iter()
                .filter_map(|c| c.deadline.map(|d| (c.tag, render_deadline(d))))
                .collect();
            // A lone untagged deadline pairs with TB1, so only drop tags when
            // that is what the single entry carries.
            let omit = omit_single_tag && cards.len() == 1;
            let mut cards = cards;
            if omit {
                cards[0].tag = 1;
            }
            let mut sections = vec![render_section("iccid", &iccid_entries, omit, &spaces)];
            if !deadline_entries.is_empty() {
                let d = render_section("invalidDate", &deadline_entries, omit, &spaces);
                if deadline_first { sections.insert(0, d) } else { sections.push(d) }
            }
            if let Some(pos) = extra {
                let pos = pos.min(sections.len());
                sections.insert(pos, " ext_note = hello|x,y ".to_owned());
            }
            let input = format!("{}{trailing}", sections.join(";"));

            let parsed = parse(&input, IccidMode::Lenient);
            let mut expected: Vec<CardSpec> = cards
                .iter()
                .map(|c| CardSpec {
                    tag: c.tag,
                    iccid: c.iccid.clone(),
                    activate_deadline: c.deadline.and_then(expected_deadline),
                })
                .collect();
            expected.sort_by_key(|c| c.tag);
            let other = if extra.is_some() {
                vec![("ext_note".to_owned(), "hello|x,y".to_owned())]
            } else {
                vec![]
            };
            prop_assert_eq!(
                parsed,
                Ok(Some(SendGoodParam { cards: expected, other_sections: other })),
                "input: {:?}", input
            );
        }

        #[test]
        fn strict_accepts_generated_valid_iccids(body in "89[0-9]{16,17}") {
            let iccid = with_luhn(&body);
            prop_assert!(is_valid_iccid(&iccid, IccidMode::Strict), "{}", iccid);
            // Any single-digit change breaks the Luhn check.
            let last = iccid.chars().last().and_then(|c| c.to_digit(10)).unwrap_or(0);
            let changed = format!("{}{}", &body, (last + 1) % 10);
            prop_assert!(!is_valid_iccid(&changed, IccidMode::Strict));
        }
    }
}
