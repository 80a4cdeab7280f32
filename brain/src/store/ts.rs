//! `Ts`: a UTC instant stored as `timestamptz` on PostgreSQL and as
//! fixed-width text (`YYYY-MM-DD HH:MM:SS.ffffff`) on SQLite, so that text
//! comparison in SQL orders instants correctly on both.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts(pub DateTime<Utc>);

const SQLITE_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// `Z4J_TESTING_CLOCK_OFFSET_SECONDS` (dev posture only): shifts the
/// brain's notion of now, so guarantees measured in days can be tested.
/// Process-wide on purpose: it must reach every `Ts::now()` (a hundred
/// call sites in store and domain code) and is set once at start-up,
/// before anything reads it; settings refuse it outside `dev`.
static CLOCK_OFFSET_MICROS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

pub fn set_clock_offset_seconds(secs: i64) {
    CLOCK_OFFSET_MICROS.store(
        secs.saturating_mul(1_000_000),
        std::sync::atomic::Ordering::Relaxed,
    );
}

impl Ts {
    /// Now, at the microsecond precision both databases store, so a value
    /// compares equal to itself after a round trip.
    pub fn now() -> Ts {
        use chrono::SubsecRound;
        let offset = CLOCK_OFFSET_MICROS.load(std::sync::atomic::Ordering::Relaxed);
        Ts(Utc::now().trunc_subsecs(6) + chrono::Duration::microseconds(offset))
    }

    pub fn plus_seconds(self, secs: i64) -> Ts {
        Ts(self.0 + chrono::Duration::seconds(secs))
    }

    /// RFC 3339 with `Z`, microsecond precision: how the API writes instants.
    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        let text = self.0.naive_utc().format(SQLITE_FORMAT).to_string();
        <String as Encode<'q, Sqlite>>::encode(text, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        let naive = NaiveDateTime::parse_from_str(text, SQLITE_FORMAT)?;
        Ok(Ts(naive.and_utc()))
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}
