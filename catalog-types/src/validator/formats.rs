//! The string formats the validator checks, written to the letter of JSON Schema's
//! (RFC 3339 `date`, `time`, `date-time`; RFC 4122 `uuid` in its hyphenated form), and
//! the integer widths schemars writes as formats (`uint32`, `int64`…).

/// A `format` the validator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `8-4-4-4-12` hexadecimal digits, either case.
    Uuid,
    /// `YYYY-MM-DD`, a real day.
    Date,
    /// `HH:MM:SS[.frac](Z|±HH:MM)`, a leap second only at 23:59 UTC.
    Time,
    /// A date, `T` (or `t`), a time.
    DateTime,
    /// An integer of this range (schemars names Rust's integer types so).
    Integer { min: i128, max: i128 },
}

/// What [`Format::parse`] says of a `format` name.
pub(super) enum Known {
    /// Checked by the validator.
    Checked(Format),
    /// Not a format JSON Schema defines (`double`, say): an annotation, checked by no one.
    Annotation,
    /// A format JSON Schema defines that this validator does not check.
    Unchecked,
}

/// The formats of JSON Schema 2020-12 (and common vocabularies) that the validator does
/// not check: a schema naming one is refused rather than checked less than it says.
const UNCHECKED: &[&str] = &[
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

impl Format {
    /// The meaning of a `format` name.
    pub(super) fn parse(name: &str) -> Known {
        let integer = |min: i128, max: i128| Known::Checked(Format::Integer { min, max });
        match name {
            "uuid" => Known::Checked(Format::Uuid),
            "date" => Known::Checked(Format::Date),
            "time" => Known::Checked(Format::Time),
            "date-time" => Known::Checked(Format::DateTime),
            "int8" => integer(i8::MIN.into(), i8::MAX.into()),
            "int16" => integer(i16::MIN.into(), i16::MAX.into()),
            "int32" => integer(i32::MIN.into(), i32::MAX.into()),
            "int64" => integer(i64::MIN.into(), i64::MAX.into()),
            "uint8" => integer(0, u8::MAX.into()),
            "uint16" => integer(0, u16::MAX.into()),
            "uint32" => integer(0, u32::MAX.into()),
            "uint64" => integer(0, u64::MAX.into()),
            _ if UNCHECKED.contains(&name) => Known::Unchecked,
            _ => Known::Annotation,
        }
    }

    /// Whether a string is of this format (integer formats hold no strings).
    pub(super) fn holds_text(self, text: &str) -> bool {
        match self {
            Format::Uuid => is_uuid(text),
            Format::Date => is_date(text),
            Format::Time => is_time(text),
            Format::DateTime => is_date_time(text),
            Format::Integer { .. } => true,
        }
    }

    /// Whether a number is of this format (the text formats hold any number).
    pub(super) fn holds_number(self, number: &serde_json::Number) -> bool {
        match self {
            Format::Integer { min, max } => {
                let value = number
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| number.as_u64().map(i128::from));
                value.is_some_and(|v| (min..=max).contains(&v))
            }
            _ => true,
        }
    }

    /// What the format is, for error messages.
    pub(super) fn describe(self) -> String {
        match self {
            Format::Uuid => "a UUID (8-4-4-4-12 hexadecimal digits)".to_owned(),
            Format::Date => "a date (YYYY-MM-DD)".to_owned(),
            Format::Time => "a time with its offset (HH:MM:SSZ or HH:MM:SS+HH:MM)".to_owned(),
            Format::DateTime => {
                "an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SSZ or with an offset)".to_owned()
            }
            Format::Integer { min, max } => format!("an integer from {min} to {max}"),
        }
    }
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `count` ASCII digits at `at`, as a number.
fn digits(bytes: &[u8], at: usize, count: usize) -> Option<u32> {
    let slice = bytes.get(at..at + count)?;
    slice.iter().try_fold(0u32, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (
        digits(bytes, 0, 4),
        digits(bytes, 5, 2),
        digits(bytes, 8, 2),
    ) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let last = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=last).contains(&day)
}

fn is_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 9 || bytes[2] != b':' || bytes[5] != b':' {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) = (
        digits(bytes, 0, 2),
        digits(bytes, 3, 2),
        digits(bytes, 6, 2),
    ) else {
        return false;
    };
    if hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut at = 8;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return false;
        }
    }
    // The offset, in minutes east of UTC.
    let offset: i64 = match bytes.get(at) {
        Some(b'Z' | b'z') if at + 1 == bytes.len() => 0,
        Some(sign @ (b'+' | b'-')) if bytes.len() - at == 6 && bytes[at + 3] == b':' => {
            let (Some(hours), Some(minutes)) = (digits(bytes, at + 1, 2), digits(bytes, at + 4, 2))
            else {
                return false;
            };
            if hours > 23 || minutes > 59 {
                return false;
            }
            let east = i64::from(hours * 60 + minutes);
            if *sign == b'+' { east } else { -east }
        }
        _ => return false,
    };
    // A leap second is the last second of a UTC day.
    let utc_minute = (i64::from(hour * 60 + minute) - offset).rem_euclid(24 * 60);
    second != 60 || utc_minute == 23 * 60 + 59
}

fn is_date_time(text: &str) -> bool {
    match text.bytes().position(|b| b == b'T' || b == b't') {
        Some(at) => is_date(&text[..at]) && is_time(&text[at + 1..]),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_hyphenated_hex_of_either_case() {
        assert!(is_uuid("0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b"));
        assert!(is_uuid("0190A5B2-7C3D-7E4F-8A1B-2C3D4E5F6A7B"));
        for bad in [
            "0190a5b27c3d7e4f8a1b2c3d4e5f6a7b",
            "{0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b}",
            "urn:uuid:0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b",
            "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7g",
            "0190a5b2-7c3d-7e4f-8a1b_2c3d4e5f6a7b",
            "",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn dates_are_real_days() {
        for good in ["2026-01-31", "2024-02-29", "2000-02-29", "0000-01-01"] {
            assert!(is_date(good), "{good}");
        }
        for bad in [
            "2026-02-29",
            "1900-02-29",
            "2026-04-31",
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-1-01",
            "2026/01/01",
            "20260101",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }

    #[test]
    fn date_times_need_an_offset_and_keep_leap_seconds_to_midnight_utc() {
        for good in [
            "2026-01-15T09:30:00Z",
            "2026-01-15t09:30:00z",
            "2026-01-15T09:30:00.123456789+02:00",
            "2026-12-31T23:59:60Z",
            "2026-12-31T18:59:60-05:00",
        ] {
            assert!(is_date_time(good), "{good}");
        }
        for bad in [
            "2026-01-15T09:30:00",
            "2026-01-15 09:30:00Z",
            "2026-01-15T24:00:00Z",
            "2026-01-15T09:60:00Z",
            "2026-01-15T09:30:60Z",
            "2026-01-15T09:30:00.Z",
            "2026-01-15T09:30:00+0200",
            "2026-01-15T09:30:00+24:00",
            "2026-02-30T09:30:00Z",
            "2026-01-15T09:30Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
    }

    #[test]
    fn integer_formats_hold_their_range() {
        let Known::Checked(uint32) = Format::parse("uint32") else {
            panic!("uint32 is checked");
        };
        assert!(uint32.holds_number(&0u32.into()));
        assert!(uint32.holds_number(&u32::MAX.into()));
        assert!(!uint32.holds_number(&(i64::from(u32::MAX) + 1).into()));
        assert!(!uint32.holds_number(&(-1i64).into()));
        assert!(matches!(Format::parse("double"), Known::Annotation));
        assert!(matches!(Format::parse("email"), Known::Unchecked));
    }
}
