//! `ferrite serve`: the heap server, for devices that keep their heaps on it
//! (`--store ferrite://HOST:PORT/TENANT`). The server itself is
//! `ferrite_net::server`; this module turns the command line into its
//! configuration and runs it until SIGTERM or SIGINT.

use clap::Args;
use ferrite_net::{
    server::{DataLocation, ServerConfig, ServerHandle, ServerLimits},
    tls,
    tokens::TokenTable,
};
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

/// Serve tenants' heaps over the network (TLS 1.3).
///
/// Example: `ferrite serve --listen 0.0.0.0:7421 --data /var/lib/ferrite-serve
/// --tokens tokens.txt --tls-cert server.pem --tls-key server.key`
#[derive(Debug, Args)]
pub struct ServeOptions {
    /// The address to listen on (`HOST:PORT`).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Where the tenants' objects live: a directory (`DIR/tenants/<tenant>/`),
    /// or `s3://BUCKET/PREFIX` (`.../<tenant>/`, with the usual `AWS_*`
    /// variables).
    #[arg(long, value_name = "DIR|URL")]
    pub data: String,

    /// The tenants: one line per tenant, `TENANT HEX-SHA256-OF-TOKEN`
    /// (`#` comments and blank lines allowed).
    #[arg(long, value_name = "FILE")]
    pub tokens: PathBuf,

    /// The server's certificate chain (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The server's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Plain TCP instead of TLS, for development: refused on any address
    /// but loopback. Clients use `ferrite+insecure://`.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub insecure: bool,

    /// The bytes each tenant may keep.
    #[arg(long, value_name = "SIZE", value_parser = crate::persist::parse_size, default_value = "64GiB")]
    pub tenant_space: u64,

    /// The largest frame on the wire (objects larger go in chunks).
    #[arg(long, value_name = "SIZE", value_parser = crate::persist::parse_size, default_value = "16MiB")]
    pub frame_max: u64,

    /// Connections in all.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub connections_max: u32,

    /// Connections per tenant.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub tenant_connections_max: u32,

    /// Requests worked on at once per connection.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub inflight_max: u32,

    /// Requests per second per tenant (bursts up to twice as many).
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub tenant_rate: u32,

    /// A connection with no traffic for this long is closed (clients ping).
    #[arg(long, value_name = "DURATION", value_parser = crate::persist::parse_duration, default_value = "2m")]
    pub idle_timeout: Duration,

    /// Print the counters on stderr this often (`0`: never; always at
    /// shutdown).
    #[arg(long, value_name = "DURATION", value_parser = parse_report_every, default_value = "60s")]
    pub report_every: Duration,
}

fn parse_report_every(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    crate::persist::parse_duration(text)
}

pub fn main(options: &ServeOptions) -> ExitCode {
    match serve(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferrite serve: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(options: &ServeOptions) -> Result<(), String> {
    let tokens = TokenTable::from_file(&options.tokens)?;
    let tls = match (&options.tls_cert, &options.tls_key, options.insecure) {
        (Some(cert), Some(key), false) => {
            Some(tls::server_config(cert, key).map_err(|e| e.to_string())?)
        }
        (None, None, true) => None,
        _ => {
            return Err("give --tls-cert and --tls-key, or --insecure (loopback only)".into());
        }
    };
    let frame_bytes_max = u32::try_from(options.frame_max)
        .map_err(|_| format!("--frame-max {} is too large", options.frame_max))?;
    let limits = ServerLimits {
        frame_bytes_max,
        tenant_bytes_max: options.tenant_space,
        connections_max: options.connections_max,
        tenant_connections_max: options.tenant_connections_max.min(options.connections_max),
        inflight_max: options.inflight_max,
        tenant_requests_per_s: options.tenant_rate,
        tenant_requests_burst: options.tenant_rate.saturating_mul(2),
        idle_ms_max: options.idle_timeout.as_millis() as u64,
        ..ServerLimits::default()
    };
    let config = ServerConfig {
        listen: options.listen,
        data: DataLocation::parse(&options.data),
        tokens,
        tls,
        limits,
        report_every: Some(options.report_every).filter(|every| !every.is_zero()),
        log: true,
    };
    let tenants = config.tokens.len();
    let secure = if config.tls.is_some() {
        "TLS 1.3"
    } else {
        "plain TCP (insecure)"
    };
    let server = ServerHandle::start(config).map_err(|e| e.to_string())?;
    eprintln!(
        "ferrite serve: listening on {} ({secure}), {tenants} tenants, data in {}",
        server.local_addr(),
        options.data
    );
    server.wait_for_signal();
    eprintln!("ferrite serve: stopping");
    let report = server.report_every_is_set();
    let counters = server.stop();
    if !report {
        eprintln!("ferrite serve: final counters: {counters}");
    }
    Ok(())
}
