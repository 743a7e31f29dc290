//! What a failed request tells about the operation, and how long to wait
//! before the next attempt.
//!
//! The client's own retries are off (`max_retries = 0`): it would retry a
//! create-only `PUT` after a server error, and the second attempt would then
//! find the object the first one created and report a conflict. Every retry
//! is made here instead, knowing what the operation was.

use object_store::client::{HttpError, HttpErrorKind};
use std::{error::Error, time::Duration};

/// What a failed attempt says about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request never reached the server (the connection failed): it had
    /// no effect and can be sent again.
    NotSent,
    /// The request was sent, and then the answer was lost or was a server
    /// error (timeout, dropped connection, 5xx, 429): it may have taken
    /// effect. Worth another attempt.
    Lost,
    /// A definite answer (not found, exists, refused, a client error): no
    /// effect, and another attempt would get the same.
    Rejected,
}

impl Failure {
    pub(crate) fn is_transient(self) -> bool {
        self != Failure::Rejected
    }
}

/// Classifies a failed request.
pub(crate) fn classify(error: &object_store::Error) -> Failure {
    use object_store::Error as E;
    match error {
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::NotImplemented { .. }
        | E::NotSupported { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => Failure::Rejected,
        _ => classify_source(error),
    }
}

/// Looks through the chain of sources of a generic error for the transport
/// failure, or the HTTP status the server answered with.
fn classify_source(error: &object_store::Error) -> Failure {
    let mut current: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect => Failure::NotSent,
                _ => Failure::Lost,
            };
        }
        current = e.source();
    }
    match response_status(error) {
        Some(status) if status >= 500 || status == 408 || status == 429 => Failure::Lost,
        Some(_) => Failure::Rejected,
        // Not from HTTP at all (a store in memory, a configuration error).
        None => Failure::Rejected,
    }
}

/// The status code of a server's answer in the error's message. `object_store`
/// keeps the status in a private type; its message says
/// "Server returned non-2xx status code: 503 Service Unavailable: ...".
/// Should that wording change, a server error reads as `Rejected`: the
/// operation is not retried, and a put that met it is still reported as of
/// unknown outcome (see `S3Store::put_new`), never as a plain failure.
pub(crate) fn response_status(error: &object_store::Error) -> Option<u16> {
    const MARK: &str = "status code: ";
    let text = error.to_string();
    let at = text.find(MARK)? + MARK.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|s| (100..600).contains(s))
}

/// Exponential backoff: `first`, then twice as long each time, at most `max`.
pub(crate) fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    debug_assert!(attempt >= 1);
    first.saturating_mul(1 << (attempt - 1).min(16)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: Box<dyn Error + Send + Sync>) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source,
        }
    }

    #[test]
    fn transport_failures_tell_sent_from_not_sent() {
        let http = |kind| generic(Box::new(HttpError::new(kind, std::io::Error::other("x"))));
        assert_eq!(classify(&http(HttpErrorKind::Connect)), Failure::NotSent);
        for kind in [
            HttpErrorKind::Request,
            HttpErrorKind::Timeout,
            HttpErrorKind::Interrupted,
            HttpErrorKind::Decode,
            HttpErrorKind::Unknown,
        ] {
            assert_eq!(classify(&http(kind)), Failure::Lost, "{kind:?}");
        }
    }

    #[test]
    fn server_errors_are_transient_and_client_errors_are_not() {
        let status = |text: &str| generic(text.to_string().into());
        let msg = "Error performing PUT http://h/b/k in 1ms - Server returned non-2xx status code:";
        assert_eq!(
            classify(&status(&format!("{msg} 503 Service Unavailable: "))),
            Failure::Lost
        );
        assert_eq!(
            classify(&status(&format!("{msg} 500 Internal Server Error: x"))),
            Failure::Lost
        );
        assert_eq!(
            classify(&status(&format!("{msg} 429 Too Many Requests: "))),
            Failure::Lost
        );
        assert_eq!(
            classify(&status(&format!("{msg} 400 Bad Request: "))),
            Failure::Rejected
        );
        assert_eq!(classify(&status("no status here")), Failure::Rejected);
        let exists = object_store::Error::AlreadyExists {
            path: "k".into(),
            source: "x".into(),
        };
        assert_eq!(classify(&exists), Failure::Rejected);
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let (first, max) = (Duration::from_millis(10), Duration::from_millis(50));
        let waits: Vec<_> = (1..=5)
            .map(|a| backoff(a, first, max).as_millis())
            .collect();
        assert_eq!(waits, [10, 20, 40, 50, 50]);
        assert_eq!(backoff(u32::MAX, first, max), max);
    }
}
