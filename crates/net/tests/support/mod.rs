//! A heap server in the test process: certificates made with rcgen, a
//! tokens file, a data directory, and clients for it.

#![allow(dead_code, clippy::unwrap_used)]

use ferrite_net::{
    client::{ClientOptions, ServerStore},
    server::{DataLocation, ServerConfig, ServerHandle, ServerLimits},
    tls,
    tokens::{digest_hex, TokenTable},
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

pub const TOKEN_T1: &str = "token-of-t1";
pub const TOKEN_T2: &str = "token-of-t2";

/// A fresh empty directory under the target's temporary directory.
pub fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("net-tests")
        .join(format!(
            "{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A private CA and a server certificate it signed, for localhost and
/// 127.0.0.1, as PEM files in `dir`.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, leaf.pem()).unwrap();
    std::fs::write(&pki.key, leaf_key.serialize_pem()).unwrap();
    pki
}

pub fn tokens() -> TokenTable {
    let text = format!(
        "# test tenants\nt1 {}\nt2 {}\n",
        digest_hex(TOKEN_T1),
        digest_hex(TOKEN_T2)
    );
    TokenTable::parse(&text).unwrap()
}

/// A server on 127.0.0.1 that can be stopped and started again on the
/// same port and data directory.
pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub pki: Option<Pki>,
    pub limits: ServerLimits,
}

impl TestServer {
    /// TLS on a fresh port.
    pub fn start(limits: ServerLimits) -> Self {
        let dir = temp_dir("server");
        let pki = pki(&dir);
        Self::start_at(
            "127.0.0.1:0".parse().unwrap(),
            dir.join("data"),
            Some(pki),
            limits,
        )
    }

    /// Plain TCP on a fresh port (for raw-byte clients).
    pub fn start_insecure(limits: ServerLimits) -> Self {
        let dir = temp_dir("server");
        Self::start_at(
            "127.0.0.1:0".parse().unwrap(),
            dir.join("data"),
            None,
            limits,
        )
    }

    fn start_at(addr: SocketAddr, data: PathBuf, pki: Option<Pki>, limits: ServerLimits) -> Self {
        let tls = pki
            .as_ref()
            .map(|pki| tls::server_config(&pki.cert, &pki.key).unwrap());
        let config = ServerConfig {
            listen: addr,
            data: DataLocation::Dir(data.clone()),
            tokens: tokens(),
            tls,
            limits: limits.clone(),
            report_every: None,
            log: true,
        };
        let handle = ServerHandle::start(config).unwrap();
        Self {
            addr: handle.local_addr(),
            handle: Some(handle),
            data,
            pki,
            limits,
        }
    }

    pub fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop();
        }
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        let again = Self::start_at(
            self.addr,
            self.data.clone(),
            self.pki.clone(),
            self.limits.clone(),
        );
        let mut again = again;
        self.handle = again.handle.take();
    }

    pub fn url(&self, tenant: &str) -> String {
        match self.pki {
            Some(_) => format!("ferrite://127.0.0.1:{}/{tenant}", self.addr.port()),
            None => format!("ferrite+insecure://127.0.0.1:{}/{tenant}", self.addr.port()),
        }
    }

    pub fn options(&self, token: &str) -> ClientOptions {
        ClientOptions {
            token: token.to_string(),
            ca_cert: self.pki.as_ref().map(|pki| pki.ca.clone()),
            ..ClientOptions::default()
        }
    }

    pub fn client(&self, tenant: &str, token: &str) -> ServerStore {
        ServerStore::open(&self.url(tenant), &self.options(token)).unwrap()
    }

    pub fn counters(&self) -> ferrite_net::wire::CounterSnapshot {
        self.handle.as_ref().unwrap().counters()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}
