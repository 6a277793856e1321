//! TOP timestamps: `yyyy-MM-dd HH:mm:ss` (or a bare `yyyy-MM-dd`) wall clock in GMT+8, or epoch
//! milliseconds (the Python SDKs). A value containing `-` is a date, anything else must be an
//! integer, as in the old gateway.

use time::{
    macros::format_description, macros::offset, Date, Duration, OffsetDateTime, PrimitiveDateTime,
    Time, UtcOffset,
};

/// China Standard Time, the zone of every TOP wall-clock string (no DST).
pub const GMT8: UtcOffset = offset!(+8);

const DATETIME: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
const DATE: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

/// Parses a `timestamp` parameter into an instant.
pub fn parse(value: &str) -> Option<OffsetDateTime> {
    if value.contains('-') {
        parse_wall_clock(value).or_else(|| {
            Date::parse(value, DATE)
                .ok()
                .map(|d| PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_offset(GMT8))
        })
    } else {
        let millis: i64 = value.parse().ok()?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
    }
}

/// Parses `yyyy-MM-dd HH:mm:ss` as GMT+8.
pub fn parse_wall_clock(value: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(value, DATETIME)
        .ok()
        .map(|dt| dt.assume_offset(GMT8))
}

/// Formats an instant as `yyyy-MM-dd HH:mm:ss` in GMT+8.
///
/// Written digit by digit: the answers of lianbei carry three of these, and `time`'s
/// format-description interpreter cost several times more than the rest of a timestamp's path.
/// Years outside 0–9999 (never a TOP value) take that interpreter's way; an instant whose GMT+8
/// wall clock is past the largest date `time` holds is written as its UTC wall clock rather
/// than panic (nothing that checks its input produces one: the admin API refuses such dates).
pub fn format_wall_clock(instant: OffsetDateTime) -> String {
    let Some(t) = instant.checked_to_offset(GMT8) else {
        return instant.format(DATETIME).unwrap_or_default();
    };
    let year = match u16::try_from(t.year()) {
        Ok(year) if year <= 9999 => year,
        _ => return t.format(DATETIME).unwrap_or_default(),
    };
    let mut out = String::with_capacity(19);
    let mut push = |value: u16, digits: u32, separator: Option<char>| {
        for k in (0..digits).rev() {
            out.push(char::from(b'0' + (value / 10u16.pow(k) % 10) as u8));
        }
        if let Some(c) = separator {
            out.push(c);
        }
    };
    push(year, 4, Some('-'));
    push(u16::from(u8::from(t.month())), 2, Some('-'));
    push(u16::from(t.day()), 2, Some(' '));
    push(u16::from(t.hour()), 2, Some(':'));
    push(u16::from(t.minute()), 2, Some(':'));
    push(u16::from(t.second()), 2, None);
    out
}

/// Whether `instant` lies within `window` of `now`, either side.
pub fn within_window(instant: OffsetDateTime, now: OffsetDateTime, window: Duration) -> bool {
    (instant - now).abs() <= window
}

/// UTC offsets in use that are not whole hours, in minutes (IANA time zones, 2024).
const PART_HOUR_OFFSETS_MIN: [i64; 11] = [-570, -210, 210, 270, 330, 345, 390, 525, 570, 630, 765];

/// Whether a wall-clock timestamp read as GMT+8 (`instant`) lies within `window` of `now` when
/// read in some other UTC offset in use instead (every whole hour from −12:00 to +14:00, and
/// the few part-hour ones such as India's +05:30): what a client formatting in its machine's
/// zone (Go, Node) sends outside China. A clock off by a whole number of hours passes too;
/// that is the price of not knowing the client's zone.
pub fn within_window_in_some_zone(
    instant: OffsetDateTime,
    now: OffsetDateTime,
    window: Duration,
) -> bool {
    // Read in offset `z`, the same wall clock is the instant `8h - z` after `instant`.
    let gap = instant - now + Duration::hours(8);
    (-12..=14)
        .map(|hours| hours * 60)
        .chain(PART_HOUR_OFFSETS_MIN)
        .any(|offset| (gap - Duration::minutes(offset)).abs() <= window)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last second `time` holds in GMT+8 and the one after it, whose GMT+8 wall clock would
    /// be in the year 10000: written, not a panic.
    #[test]
    fn formatting_never_panics_at_the_end_of_the_calendar() {
        let last = parse_wall_clock("9999-12-31 23:59:59").unwrap();
        assert_eq!(format_wall_clock(last), "9999-12-31 23:59:59");
        let after = last.to_offset(time::UtcOffset::UTC) + Duration::seconds(60);
        assert_eq!(format_wall_clock(after), "9999-12-31 16:00:59");
    }

    #[test]
    fn a_wall_clock_of_another_zone_is_on_time_only_in_some_zone() {
        let now = parse("2024-01-15 10:30:00").unwrap();
        let window = Duration::minutes(10);
        let on_time = |wall: &str| {
            let instant = parse_wall_clock(wall).unwrap();
            (
                within_window(instant, now, window),
                within_window_in_some_zone(instant, now, window),
            )
        };
        assert_eq!(on_time("2024-01-15 10:35:00"), (true, true), "GMT+8 itself");
        assert_eq!(on_time("2024-01-15 02:30:00"), (false, true), "UTC");
        assert_eq!(
            on_time("2024-01-15 08:00:00"),
            (false, true),
            "India, +05:30"
        );
        assert_eq!(
            on_time("2024-01-14 21:31:00"),
            (false, true),
            "New York, -05:00"
        );
        assert_eq!(
            on_time("2024-01-15 10:50:00"),
            (false, false),
            "20 minutes off"
        );
        assert_eq!(
            on_time("2024-01-15 09:55:00"),
            (false, false),
            "35 minutes off"
        );
        assert_eq!(
            on_time("2024-01-14 13:30:00"),
            (false, false),
            "GMT-13 is no zone"
        );
    }

    proptest::proptest! {
        #[test]
        fn wall_clock_matches_the_format_description(millis in -62_135_596_800_000i64..253_402_300_799_000i64) {
            let instant = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).unwrap();
            let expected = instant.to_offset(GMT8).format(DATETIME).unwrap();
            proptest::prop_assert_eq!(format_wall_clock(instant), expected);
        }
    }

    #[test]
    fn millis_and_wall_clock_agree() {
        let a = parse("1705285800000").unwrap();
        let b = parse("2024-01-15 10:30:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_wall_clock(a), "2024-01-15 10:30:00");
    }

    #[test]
    fn bare_date_and_garbage() {
        assert!(parse("2024-01-15").is_some());
        assert!(parse("2024-13-15 10:00:00").is_none());
        assert!(parse("yyyy-MM-dd HH:mm:ss").is_none());
        assert!(parse("12ab").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn window() {
        let now = parse("2024-01-15 10:30:00").unwrap();
        let ten = Duration::minutes(10);
        assert!(within_window(
            parse("2024-01-15 10:40:00").unwrap(),
            now,
            ten
        ));
        assert!(!within_window(
            parse("2024-01-15 10:40:01").unwrap(),
            now,
            ten
        ));
        assert!(!within_window(
            parse("2024-01-15 10:19:59").unwrap(),
            now,
            ten
        ));
    }
}
