//! Ferrite's heap server and its client: a device keeps its heap on a
//! server over one long-lived TLS 1.3 connection.
//!
//! - [`wire`]: the protocol (frames, messages, limits, error codes); the
//!   contract is `docs/protocol.md`.
//! - [`server`]: `ferrite serve`, tenants' objects in a local crash-safe
//!   directory or in S3-compatible storage.
//! - [`client`]: [`client::ServerStore`], a [`ferrite_pagestore::StorageBackend`]
//!   on `ferrite://HOST:PORT/TENANT`, which owns a small tokio runtime so
//!   that its callers stay synchronous.
//!
//! ```no_run
//! use ferrite_net::client::{ClientOptions, ServerStore};
//! use ferrite_pagestore::StorageBackend;
//!
//! let options = ClientOptions {
//!     token: "secret".into(),
//!     ..ClientOptions::default()
//! };
//! let store = ServerStore::open("ferrite://heaps.example:7421/t1", &options)?;
//! store.put_new("modules/example", b"bytes")?;
//! assert_eq!(store.get("modules/example", Some(0..5))?, b"bytes");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | Feature | Cost |
//! |---------|------|
//! | a demand get | one frame each way on the open connection; the server reads on its blocking pool |
//! | a put over a frame (up to 256 MiB) | chunks of a frame each, held in the server's memory until the last, then one create-only put |
//! | `subscribe` | one request; afterwards a `Created` frame per key made under the prefix |
//! | `prefetch` | one `Push` request; the bytes arrive at prefetch priority into a bounded buffer (256 MiB by default) |
//! | an outage | operations wait (reconnecting with backoff) up to `outage_wait_ms_max`, telling a notice hook |

pub mod client;
mod counters;
pub mod server;
pub mod tls;
pub mod tokens;
pub mod wire;
