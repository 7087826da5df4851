//! W3C trace context captured at emit, so a consumer's span can join the producer's trace.
//!
//! A service that receives a `traceparent` (from an HTTP request, say) runs its handler
//! inside [`scope`]; every emit within it stores that context in `headers.traceparent`.

use std::future::Future;

/// A W3C trace context: `traceparent` and optional `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

/// Why a `traceparent` was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{0}` is not a W3C traceparent (version-traceid-parentid-flags, e.g. 00-<32 hex>-<16 hex>-01)"
)]
pub struct InvalidTraceparent(pub String);

impl TraceContext {
    /// Parses a `traceparent` header value (and an optional `tracestate`).
    pub fn new(traceparent: &str, tracestate: Option<&str>) -> Result<Self, InvalidTraceparent> {
        if is_valid_traceparent(traceparent) {
            Ok(TraceContext {
                traceparent: traceparent.to_ascii_lowercase(),
                tracestate: tracestate.map(str::to_owned).filter(|s| !s.is_empty()),
            })
        } else {
            Err(InvalidTraceparent(traceparent.to_owned()))
        }
    }

    /// The `traceparent` value.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` value, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Runs `future` with `context` as the ambient trace context of every emit inside it.
pub async fn scope<F: Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The ambient trace context, if the caller is inside [`scope`].
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// `00-<32 hex trace id, not all zero>-<16 hex parent id, not all zero>-<2 hex flags>`.
pub(crate) fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    parts.len() >= 4
        && hex(parts[0], 2)
        && !parts[0].eq_ignore_ascii_case("ff")
        && hex(parts[1], 32)
        && !zero(parts[1])
        && hex(parts[2], 16)
        && !zero(parts[2])
        && hex(parts[3], 2)
        && (parts[0] != "00" || parts.len() == 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_w3c_examples_and_refuses_malformed_values() {
        assert!(is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
        ));
        assert!(!is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent("garbage"));
    }

    #[tokio::test]
    async fn scope_sets_the_ambient_context() {
        assert_eq!(current(), None);
        let context = TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("a=b"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let seen = scope(context.clone(), async { current() }).await;
        assert_eq!(seen, Some(context));
    }
}
