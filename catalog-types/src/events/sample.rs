//! Fixed ids and instants for the payloads' examples, so examples and docs are stable.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use crate::{Changes, CurrencyCode, FieldChange};

/// The sample tenant.
pub const TENANT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

/// A stable sample id, distinct per `n`.
pub const fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_1000 + n)
}

/// A stable sample instant.
pub fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 9, 30, 0)
        .single()
        .unwrap_or_default()
}

/// A stable sample date.
pub fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 2, 1).unwrap_or_default()
}

/// US dollars.
pub fn usd() -> CurrencyCode {
    CurrencyCode::usd()
}

/// A one-field `changes` object.
pub fn changes(field: &str, previous: &str, new: &str) -> Changes {
    let mut changes = Changes::new();
    changes.insert(
        field.to_owned(),
        FieldChange {
            previous: previous.into(),
            new: new.into(),
        },
    );
    changes
}
