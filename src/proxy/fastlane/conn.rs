//! Connections to registries for the fast lane: plain TCP, or TLS (rustls with
//! the system roots plus the connector's own CAs, HTTP/1.1 by ALPN).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::timer::ReadTimer;

/// One connection to a registry, with the read deadline it keeps while pooled.
pub struct Conn {
    /// The byte stream.
    pub io: Io,
    /// Times out reads on `io` without a timer per read.
    pub timer: ReadTimer,
}

/// A registry connection's byte stream.
pub enum Io {
    /// `http://` registries; bodies can be spliced from it.
    Plain(TcpStream),
    /// `https://` registries; bodies are decrypted in user space.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// A new connection over `io`.
    pub fn new(io: Io) -> Self {
        Conn { io, timer: ReadTimer::new() }
    }

    /// The TCP socket when nothing sits between it and the body bytes.
    pub fn plain(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Plain(s) => Some(s),
            Io::Tls(_) => None,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How to secure connections to one connector's registry.
#[derive(Clone)]
pub struct TlsTarget {
    /// SNI and the name the certificate must carry.
    pub server_name: ServerName<'static>,
    /// Trust roots (system plus the connector's CAs) and ALPN.
    pub config: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// The system's trust roots, loaded once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
        if added == 0 {
            log::warn!("no system CA certificates found; https registries need a connector CA");
        }
        store
    })
}

impl TlsTarget {
    /// The target for `host`, trusting the system roots and `extra_cas` (DER).
    /// `None` when `host` is not a valid server name or a CA is unusable: the
    /// connector then stays on Pingora's general path, which reports such
    /// problems per request.
    pub fn new(host: &str, extra_cas: &[Vec<u8>]) -> Option<TlsTarget> {
        let server_name = ServerName::try_from(host.to_string()).ok()?;
        if extra_cas.is_empty() {
            // Most connectors trust the system roots only: share one config.
            static SYSTEM: OnceLock<Option<Arc<ClientConfig>>> = OnceLock::new();
            let config = SYSTEM.get_or_init(|| client_config(system_roots().clone())).clone()?;
            return Some(TlsTarget { server_name, config });
        }
        let mut roots = system_roots().clone();
        for der in extra_cas {
            roots.add(CertificateDer::from(der.clone())).ok()?;
        }
        Some(TlsTarget { server_name, config: client_config(roots)? })
    }

    /// Runs the handshake on `tcp`.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<Conn> {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = connector.connect(self.server_name.clone(), tcp).await?;
        Ok(Conn::new(Io::Tls(Box::new(tls))))
    }
}

/// A client config over `roots`, ALPN `http/1.1`, ring as the crypto provider.
fn client_config(roots: RootCertStore) -> Option<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

/// Whether a handshake failed on the registry's certificate (as opposed to the
/// connection or the protocol).
pub fn is_certificate_error(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)))
}
