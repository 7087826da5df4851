//! Durations as operators type and read them: `500ms`, `15s`, `2h`, `7d`.
//!
//! Flags parse them, help texts show their defaults and reports print them in the same
//! notation, so the default written in [`crate::foundation::config`] is the one `--help` shows.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A [`Duration`] that parses from and prints as `500ms`, `15s`, `2h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl From<HumanDuration> for Duration {
    fn from(value: HumanDuration) -> Duration {
        value.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    /// Accepts what `humantime` accepts (`1s`, `1m 30s`, `2h`, `7d`, `500ms`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text)
            .map(HumanDuration)
            .map_err(|e| format!("`{text}` is not a duration like 500ms, 1s, 2h or 7d ({e})"))
    }
}

impl fmt::Display for HumanDuration {
    /// The largest unit that divides the duration exactly (`7d`, `90s`, `1500ms`); below a
    /// millisecond, or with a fraction of one, in microseconds or nanoseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u128, &str); 7] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let (size, unit) = UNITS
            .iter()
            .find(|(size, _)| nanos.is_multiple_of(*size))
            .copied()
            .unwrap_or((1, "ns"));
        write!(f, "{}{unit}", nanos / size)
    }
}

/// Prints a [`Duration`] in the notation of [`HumanDuration`].
pub fn show(duration: Duration) -> String {
    HumanDuration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_in_the_largest_exact_unit_and_parses_back() {
        for (duration, text) in [
            (Duration::from_secs(7 * 86_400), "7d"),
            (Duration::from_secs(2 * 3600), "2h"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_millis(2), "2ms"),
            (Duration::from_micros(3), "3us"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(HumanDuration(duration).to_string(), text);
            assert_eq!(text.parse::<HumanDuration>(), Ok(HumanDuration(duration)));
        }
    }

    #[test]
    fn a_malformed_duration_names_the_text_and_the_notation() {
        let error = "7 weeks-ish".parse::<HumanDuration>().unwrap_err();
        assert!(
            error.contains("`7 weeks-ish`") && error.contains("7d"),
            "{error}"
        );
    }
}
