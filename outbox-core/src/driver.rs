//! The sqlx versions the outbox runs on: one set of statements, run through whichever
//! version's connection the caller holds.
//!
//! The outbox's SQL and its parameters are written once (in `emit`, `inbox` and `migrate`)
//! as a [`Statement`]; [`SqlxConnection`] and [`SqlxPool`] are implemented for the
//! connection, transaction and pool types of each enabled sqlx version by one macro, so the
//! code that binds and runs a statement is also written once. sqlx's types differ between
//! its versions (0.9's `query` takes a `SqlSafeStr`, its `Migration` a `SqlStr`), but the
//! outbox uses only what both spell alike: `query` and `query_as` of a `&'static str`,
//! `bind` of `uuid`, `chrono`, `serde_json` values and slices of them.
//!
//! [`Arg`], [`Statement`] and the `sealed` traits are `pub` only so that the public traits
//! may name them; this module is private, so no caller can.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::error::DatabaseError;

/// A Postgres connection of an enabled sqlx version that the outbox can write through: a
/// `PgConnection`, a `Transaction<'_, Postgres>` or a `PoolConnection<Postgres>` of sqlx 0.9
/// (feature `sqlx-0_9`, the default) or of sqlx 0.8 (feature `sqlx-0_8`).
///
/// Pass `&mut *tx` (or `&mut tx`) of the service's own transaction, so the events commit or
/// roll back with its rows. The trait is sealed: the outbox implements it for those types
/// only.
pub trait SqlxConnection: sealed::Connection {}

/// A Postgres pool of an enabled sqlx version (`PgPool` of sqlx 0.9 or 0.8), for the
/// outbox's start-up work: [`crate::migrate`] and [`crate::sync_catalog`]. Sealed, like
/// [`SqlxConnection`].
pub trait SqlxPool: sealed::Pool {}

/// A parameter of a [`Statement`]: the types the outbox binds, each of which every
/// supported sqlx version encodes the same way.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Text(&'a str),
    OptText(Option<&'a str>),
    OptJson(Option<&'a Value>),
    OptTime(Option<DateTime<Utc>>),
    OptFloat(Option<f64>),
    Uuids(&'a [Uuid]),
    OptUuids(&'a [Option<Uuid>]),
    Texts(&'a [String]),
    Strs(&'a [&'a str]),
    OptTexts(&'a [Option<String>]),
    Jsons(&'a [Value]),
    JsonRefs(&'a [&'a Value]),
    OptTimes(&'a [Option<DateTime<Utc>>]),
    OptFloats(&'a [Option<f64>]),
}

macro_rules! arg_from {
    ($($variant:ident: $type:ty),* $(,)?) => {$(
        impl<'a> From<$type> for Arg<'a> {
            fn from(value: $type) -> Self {
                Arg::$variant(value)
            }
        }
    )*};
}

arg_from! {
    Uuid: Uuid,
    OptUuid: Option<Uuid>,
    Text: &'a str,
    OptText: Option<&'a str>,
    OptJson: Option<&'a Value>,
    OptTime: Option<DateTime<Utc>>,
    OptFloat: Option<f64>,
    Uuids: &'a [Uuid],
    OptUuids: &'a [Option<Uuid>],
    Texts: &'a [String],
    Strs: &'a [&'a str],
    OptTexts: &'a [Option<String>],
    Jsons: &'a [Value],
    JsonRefs: &'a [&'a Value],
    OptTimes: &'a [Option<DateTime<Utc>>],
    OptFloats: &'a [Option<f64>],
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(value: &'a String) -> Self {
        Arg::Text(value)
    }
}

impl<'a, T> From<&'a Vec<T>> for Arg<'a>
where
    Arg<'a>: From<&'a [T]>,
{
    fn from(value: &'a Vec<T>) -> Self {
        Arg::from(value.as_slice())
    }
}

/// One SQL statement of the outbox and its parameters, run by [`Statement::execute`] or
/// [`Statement::fetch_keyed`] on a connection of either sqlx version.
#[derive(Debug)]
pub struct Statement<'a> {
    sql: &'static str,
    args: Vec<Arg<'a>>,
}

/// A row of the outbox's `RETURNING id, tenant_id, dedupe_key` (and its look-up twin).
pub type KeyedId = (Uuid, Option<Uuid>, String);

impl<'a> Statement<'a> {
    /// A statement of the outbox's own (a literal: nothing of the caller's is spliced in).
    pub(crate) fn new(sql: &'static str) -> Self {
        Statement {
            sql,
            args: Vec::new(),
        }
    }

    /// Binds the next parameter (`$1`, `$2`, … in order).
    pub(crate) fn bind(mut self, value: impl Into<Arg<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Runs the statement; returns the number of rows it affected.
    pub(crate) async fn execute(
        self,
        conn: &mut (impl SqlxConnection + ?Sized),
    ) -> Result<u64, DatabaseError> {
        sealed::Connection::execute(conn, self).await
    }

    /// Runs the statement; returns its `(id, tenant_id, dedupe_key)` rows.
    pub(crate) async fn fetch_keyed(
        self,
        conn: &mut (impl SqlxConnection + ?Sized),
    ) -> Result<Vec<KeyedId>, DatabaseError> {
        sealed::Connection::fetch_keyed(conn, self).await
    }

    /// Runs the statement on a connection of `pool`; returns the number of rows it affected.
    pub(crate) async fn execute_on_pool(
        self,
        pool: &(impl SqlxPool + ?Sized),
    ) -> Result<u64, DatabaseError> {
        sealed::Pool::execute(pool, self).await
    }
}

/// The methods behind the public traits, out of callers' reach (a sealed trait: no type
/// outside this crate can implement it, and its methods are not part of the API).
pub mod sealed {
    use super::*;

    pub trait Connection: Send {
        fn execute<'c>(
            &'c mut self,
            statement: Statement<'c>,
        ) -> impl Future<Output = Result<u64, DatabaseError>> + Send + 'c;

        fn fetch_keyed<'c>(
            &'c mut self,
            statement: Statement<'c>,
        ) -> impl Future<Output = Result<Vec<KeyedId>, DatabaseError>> + Send + 'c;
    }

    pub trait Pool: Sync {
        fn execute<'c>(
            &'c self,
            statement: Statement<'c>,
        ) -> impl Future<Output = Result<u64, DatabaseError>> + Send + 'c;

        /// Applies the embedded migrations with this version's migrator.
        fn run_migrations(&self) -> impl Future<Output = Result<(), DatabaseError>> + Send + '_;
    }
}

/// Binds `$args` (an iterator of [`Arg`]) to `$query`, a `Query` or `QueryAs` of any
/// supported sqlx version (both spell `bind` alike).
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Uuid(v) => query.bind(v),
                Arg::OptUuid(v) => query.bind(v),
                Arg::Text(v) => query.bind(v),
                Arg::OptText(v) => query.bind(v),
                Arg::OptJson(v) => query.bind(v),
                Arg::OptTime(v) => query.bind(v),
                Arg::OptFloat(v) => query.bind(v),
                Arg::Uuids(v) => query.bind(v),
                Arg::OptUuids(v) => query.bind(v),
                Arg::Texts(v) => query.bind(v),
                Arg::Strs(v) => query.bind(v),
                Arg::OptTexts(v) => query.bind(v),
                Arg::Jsons(v) => query.bind(v),
                Arg::JsonRefs(v) => query.bind(v),
                Arg::OptTimes(v) => query.bind(v),
                Arg::OptFloats(v) => query.bind(v),
            };
        }
        query
    }};
}

/// Implements the traits for one sqlx version, named by the crate `$sqlx` (the same source
/// for every version).
macro_rules! for_sqlx_version {
    ($sqlx:ident, $migrator:path) => {
        impl sealed::Connection for $sqlx::PgConnection {
            fn execute<'c>(
                &'c mut self,
                statement: Statement<'c>,
            ) -> impl Future<Output = Result<u64, DatabaseError>> + Send + 'c {
                async move {
                    let query = bind_all!($sqlx::query(statement.sql), statement.args);
                    Ok(query.execute(self).await?.rows_affected())
                }
            }

            fn fetch_keyed<'c>(
                &'c mut self,
                statement: Statement<'c>,
            ) -> impl Future<Output = Result<Vec<KeyedId>, DatabaseError>> + Send + 'c {
                async move {
                    let query = bind_all!(
                        $sqlx::query_as::<_, KeyedId>(statement.sql),
                        statement.args
                    );
                    Ok(query.fetch_all(self).await?)
                }
            }
        }
        impl SqlxConnection for $sqlx::PgConnection {}

        for_sqlx_version!(@deref $sqlx, $sqlx::Transaction<'_, $sqlx::Postgres>);
        for_sqlx_version!(@deref $sqlx, $sqlx::pool::PoolConnection<$sqlx::Postgres>);

        impl sealed::Pool for $sqlx::PgPool {
            fn execute<'c>(
                &'c self,
                statement: Statement<'c>,
            ) -> impl Future<Output = Result<u64, DatabaseError>> + Send + 'c {
                async move {
                    let mut conn = self.acquire().await?;
                    sealed::Connection::execute(&mut *conn, statement).await
                }
            }

            fn run_migrations(
                &self,
            ) -> impl Future<Output = Result<(), DatabaseError>> + Send + '_ {
                async move { Ok($migrator.run(self).await?) }
            }
        }
        impl SqlxPool for $sqlx::PgPool {}

        impl From<$sqlx::Error> for DatabaseError {
            fn from(error: $sqlx::Error) -> Self {
                let (code, message) = match &error {
                    $sqlx::Error::Database(db) => (
                        db.code().map(|code| code.into_owned()),
                        Some(db.message().to_owned()),
                    ),
                    _ => (None, None),
                };
                DatabaseError::new(Box::new(error), code, message)
            }
        }

        /// `?` on a call of this sqlx version in a function returning `EmitError`.
        impl From<$sqlx::Error> for crate::EmitError {
            fn from(error: $sqlx::Error) -> Self {
                crate::EmitError::Database(error.into())
            }
        }

        /// `?` on a call of this sqlx version in a function returning `InboxError`.
        impl From<$sqlx::Error> for crate::InboxError {
            fn from(error: $sqlx::Error) -> Self {
                crate::InboxError::Database(error.into())
            }
        }

        impl From<$sqlx::migrate::MigrateError> for DatabaseError {
            /// Keeps the SQLSTATE and message of a statement the server refused.
            fn from(error: $sqlx::migrate::MigrateError) -> Self {
                let refused = std::iter::successors(
                    std::error::Error::source(&error),
                    |e| e.source(),
                )
                .find_map(|e| match e.downcast_ref::<$sqlx::Error>() {
                    Some($sqlx::Error::Database(db)) => Some((
                        db.code().map(|code| code.into_owned()),
                        db.message().to_owned(),
                    )),
                    _ => None,
                });
                let (code, message) = match refused {
                    Some((code, message)) => (code, Some(message)),
                    None => (None, None),
                };
                DatabaseError::new(Box::new(error), code, message)
            }
        }
    };
    // A connection type that dereferences to the version's `PgConnection`.
    (@deref $sqlx:ident, $type:ty) => {
        impl sealed::Connection for $type {
            fn execute<'c>(
                &'c mut self,
                statement: Statement<'c>,
            ) -> impl Future<Output = Result<u64, DatabaseError>> + Send + 'c {
                sealed::Connection::execute(&mut **self, statement)
            }

            fn fetch_keyed<'c>(
                &'c mut self,
                statement: Statement<'c>,
            ) -> impl Future<Output = Result<Vec<KeyedId>, DatabaseError>> + Send + 'c {
                sealed::Connection::fetch_keyed(&mut **self, statement)
            }
        }
        impl SqlxConnection for $type {}
    };
}

#[cfg(feature = "sqlx-0_9")]
for_sqlx_version!(sqlx, crate::migrate::MIGRATOR);

#[cfg(feature = "sqlx-0_8")]
for_sqlx_version!(sqlx_0_8, crate::migrate::MIGRATOR_0_8);

/// Compiled with the tests, never run: the future of every function that takes a connection
/// or a pool is `Send` for every implementation, so a service can emit in a spawned task or
/// a web handler on either sqlx version.
#[cfg(test)]
#[allow(dead_code)]
fn futures_are_send<C: SqlxConnection, P: SqlxPool>(
    conn: &mut C,
    pool: &P,
    event: &catalog_types::TicketCreated,
) {
    fn require_send<T: Send>(_: T) {}
    require_send(crate::emit(conn, event));
    require_send(crate::emit_with(conn, event, crate::EmitOptions::new()));
    require_send(crate::emit_untyped(
        conn,
        "TICKET_CREATED",
        Value::Null,
        crate::EmitOptions::new(),
    ));
    require_send(crate::emit_batch(conn, &[]));
    require_send(crate::inbox::record(conn, "consumer", "message"));
    require_send(crate::migrate(pool));
    require_send(crate::sync_catalog(pool));
}
