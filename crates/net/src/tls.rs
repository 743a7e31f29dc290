//! TLS 1.3 configurations of the server and the client, from PEM files.

use rustls::{
    crypto::aws_lc_rs,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ClientConfig, RootCertStore, ServerConfig,
};
use std::{path::Path, sync::Arc};

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct TlsError {
    pub what: String,
    pub reason: String,
}

#[cold]
fn tls_error(what: impl Into<String>, reason: impl std::fmt::Display) -> TlsError {
    TlsError {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// The certificates of a PEM file.
///
/// # Errors
/// An unreadable file, or one without certificates.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let what = || format!("cannot read certificates from {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(what(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what(), e))?;
    if certs.is_empty() {
        return Err(tls_error(what(), "the file holds no certificate"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
///
/// # Errors
/// An unreadable file, or one without a key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        tls_error(
            format!("cannot read a private key from {}", path.display()),
            e,
        )
    })
}

/// A server configuration, TLS 1.3 only, from a certificate chain and its key.
///
/// # Errors
/// Unreadable files, or a key that does not match the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key = private_key(key)?;
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("cannot configure TLS 1.3", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("the certificate and key do not make a TLS identity", e))?;
    Ok(Arc::new(config))
}

/// A client configuration, TLS 1.3 only, trusting the certificates in
/// `ca` (a private CA), else the system's roots.
///
/// # Errors
/// An unreadable CA file, or no usable root at all.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = ca {
        for cert in certificates(path)? {
            roots
                .add(cert)
                .map_err(|e| tls_error(format!("bad CA certificate in {}", path.display()), e))?;
        }
    } else {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(tls_error(
                "no system root certificates found",
                "give the server's CA certificate (--ca-cert)",
            ));
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("cannot configure TLS 1.3", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
