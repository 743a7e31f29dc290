//! What a failed request tells about the operation, and how long to wait
//! before the next attempt.
//!
//! The client's own retries are off (`max_retries = 0`): it would retry a
//! create-only `PUT` after a server error, and the second attempt would then
//! find the object the first one created and report a conflict. Every retry
//! is made here instead, knowing what the operation was.
//!
//! `object_store` keeps the status of a failed answer in a type of a private
//! module (`client::retry::RetryError`), which cannot be named outside the
//! crate. So the store's HTTP client is wrapped ([`StatusConnector`]): an
//! answer whose status the classification needs (a server error, 408, 429,
//! and any failed answer to a listing, which `object_store` reports as a
//! generic error) becomes a transport error whose source is a typed
//! [`ResponseStatus`]. Other answers (404, 412, 403 on an object) pass
//! unchanged to `object_store`, which maps them to its typed variants.

use object_store::{
    client::{
        HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
        HttpService, ReqwestConnector,
    },
    ClientOptions,
};
use std::{error::Error, fmt, time::Duration};

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

/// The status of an answer the store's client turned into an error (see the
/// module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseStatus {
    /// The HTTP status code (100 ..= 599).
    pub(crate) status: u16,
    /// The request was a listing.
    pub(crate) listing: bool,
}

impl fmt::Display for ResponseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.listing {
            "a listing"
        } else {
            "a request"
        };
        write!(f, "the server answered {what} with status {}", self.status)
    }
}

impl Error for ResponseStatus {}

impl ResponseStatus {
    /// Whether the store's client reports an answer with `status` as this
    /// error instead of passing it to `object_store`.
    fn is_reported(status: u16, listing: bool) -> bool {
        let failed = !(200..300).contains(&status);
        status >= 500 || status == 408 || status == 429 || (listing && failed)
    }
}

/// Makes the store's HTTP clients: `object_store`'s reqwest client, wrapped
/// by [`StatusService`].
#[derive(Debug, Default)]
pub(crate) struct StatusConnector;

impl HttpConnector for StatusConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(StatusService { inner }))
    }
}

/// An HTTP client that reports the answers the classification needs as a
/// typed [`ResponseStatus`].
#[derive(Debug)]
struct StatusService {
    inner: HttpClient,
}

#[async_trait::async_trait]
impl HttpService for StatusService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // S3's ListObjectsV2 is a GET of the bucket with `list-type=2`.
        let listing = request.method() == "GET"
            && request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("list-type=")));
        let response = self.inner.execute(request).await?;
        let status = response.status().as_u16();
        if ResponseStatus::is_reported(status, listing) {
            return Err(HttpError::new(
                HttpErrorKind::Unknown,
                ResponseStatus { status, listing },
            ));
        }
        Ok(response)
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

/// Looks through the chain of sources of a generic error for the status of
/// the answer, or else the transport failure.
fn classify_source(error: &object_store::Error) -> Failure {
    if let Some(status) = response_status(error) {
        return if status >= 500 || status == 408 || status == 429 {
            Failure::Lost
        } else {
            Failure::Rejected
        };
    }
    match find_source::<HttpError>(error).map(HttpError::kind) {
        Some(HttpErrorKind::Connect) => Failure::NotSent,
        Some(_) => Failure::Lost,
        // Not from HTTP at all (a store in memory, a configuration error).
        None => Failure::Rejected,
    }
}

/// The status of the server's answer, when the store's client reported it.
pub(crate) fn response_status(error: &object_store::Error) -> Option<u16> {
    find_source::<ResponseStatus>(error).map(|s| s.status)
}

fn find_source<T: Error + 'static>(error: &object_store::Error) -> Option<&T> {
    let mut current: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
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

    /// As the store's client reports an answer: a transport error whose
    /// source is the status.
    fn answered(status: u16) -> object_store::Error {
        let listing = false;
        let http = HttpError::new(HttpErrorKind::Unknown, ResponseStatus { status, listing });
        generic(Box::new(http))
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
        for status in [500, 502, 503, 504, 408, 429] {
            assert_eq!(classify(&answered(status)), Failure::Lost, "{status}");
        }
        for status in [400, 403, 404, 416] {
            assert_eq!(classify(&answered(status)), Failure::Rejected, "{status}");
        }
        assert_eq!(response_status(&answered(503)), Some(503));
        // The text of a message is never read: a status only in the text is
        // not one.
        let text = "Server returned non-2xx status code: 503 Service Unavailable";
        assert_eq!(response_status(&generic(text.into())), None);
        assert_eq!(classify(&generic(text.into())), Failure::Rejected);
        let exists = object_store::Error::AlreadyExists {
            path: "k".into(),
            source: "x".into(),
        };
        assert_eq!(classify(&exists), Failure::Rejected);
    }

    #[test]
    fn the_client_reports_the_answers_the_classification_needs() {
        for (status, listing, reported) in [
            (200, false, false),
            (200, true, false),
            (206, false, false),
            (304, false, false),
            (404, false, false),
            (412, false, false),
            (403, false, false),
            (404, true, true),
            (403, true, true),
            (500, false, true),
            (503, false, true),
            (429, false, true),
            (408, false, true),
        ] {
            assert_eq!(
                ResponseStatus::is_reported(status, listing),
                reported,
                "{status} listing={listing}"
            );
        }
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
