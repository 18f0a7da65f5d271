//! The socket options that bound kernel buffering reach the running proxy's
//! real sockets: the client connection a blob is relayed on carries
//! `TCP_NOTSENT_LOWAT`, and the registry connections carry `SO_RCVBUF` from
//! `upstream.receiveBuffer`, on the fast lane and on Pingora's general path.
//!
//! The proxy is a child process; its sockets are read with `pidfd_getfd(2)`,
//! which duplicates a descriptor of another process (root, or ptrace rights
//! over it), so the options are what the kernel holds, not what we meant to set.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::fixture::{Mode, Upstream};
use common::images;
use common::proxy::{Proxy, Resolver};
use common::raw::read_response;
use oci_connector::proxy::tcp::{self, CLIENT_UNSENT_LOWAT};

/// `upstream.receiveBuffer` in these tests: below a stock kernel's
/// `net.core.rmem_max` (208 KiB), so the proxy applies it everywhere, and a
/// size the kernel's autotuning does not land on by itself.
const RECEIVE_BUFFER: usize = 100 * 1024;
const PATIENCE: Duration = Duration::from_secs(20);

/// One TCP socket of the proxy, duplicated into this process.
struct Socket {
    fd: OwnedFd,
    inode: u64,
    peer: SocketAddr,
}

impl Socket {
    fn int_option(&self, level: libc::c_int, option: libc::c_int) -> usize {
        tcp::get_int(self.fd.as_raw_fd(), level, option).expect("getsockopt")
    }

    fn receive_buffer(&self) -> usize {
        self.int_option(libc::SOL_SOCKET, libc::SO_RCVBUF)
    }

    fn unsent_lowat(&self) -> usize {
        self.int_option(libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT)
    }
}

/// Every connected TCP socket the process `pid` holds.
fn sockets_of(pid: u32) -> Vec<Socket> {
    // SAFETY: plain system calls; every descriptor returned is owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    assert!(pidfd >= 0, "pidfd_open({pid}): {}", std::io::Error::last_os_error());
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("proxy's fd dir").flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let Some(inode) =
            target.to_str().and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        else {
            continue;
        };
        let Some(number) = entry.file_name().to_str().and_then(|n| n.parse::<libc::c_int>().ok()) else {
            continue;
        };
        let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), number, 0) };
        if dup < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::EBADF), "pidfd_getfd (needs root or ptrace rights): {e}");
            continue; // closed since the listing
        }
        let fd = unsafe { OwnedFd::from_raw_fd(dup as RawFd) };
        // Only to ask for the peer: a listener or a Unix socket has none.
        let stream = StdTcpStream::from(fd);
        let Ok(peer) = stream.peer_addr() else { continue };
        found.push(Socket { fd: OwnedFd::from(stream), inode, peer });
    }
    found
}

/// The proxy's sockets connected to `port` that are not in `before`.
fn new_sockets_to(pid: u32, port: u16, before: &HashSet<u64>) -> Vec<Socket> {
    sockets_of(pid).into_iter().filter(|s| s.peer.port() == port && !before.contains(&s.inode)).collect()
}

fn inodes_to(pid: u32, port: u16) -> HashSet<u64> {
    sockets_of(pid).into_iter().filter(|s| s.peer.port() == port).map(|s| s.inode).collect()
}

/// The proxy's end of the client connection `client`.
fn proxy_end_of(pid: u32, client: &TcpStream) -> Socket {
    let me = client.local_addr().expect("client address");
    sockets_of(pid).into_iter().find(|s| s.peer == me).expect("the proxy holds the client connection")
}

/// GET `path` on `conn` (keep-alive); the response's status and body.
async fn get(conn: &mut TcpStream, proxy: &Proxy, path: &str) -> (u16, Vec<u8>) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: {}\r\n\r\n",
        proxy.addr(),
        common::MANIFEST_TYPES
    );
    conn.write_all(request.as_bytes()).await.expect("send request");
    let mut buf = Vec::new();
    let r = read_response(conn, &mut buf, false, PATIENCE).await;
    (r.status, r.body)
}

/// GETs `layer` on `conn` and checks it arrived whole (status and digest).
async fn get_blob(conn: &mut TcpStream, proxy: &Proxy, layer: &images::Blob) {
    let (status, body) = get(conn, proxy, &api_path(&format!("multi/blobs/{}", layer.digest))).await;
    assert_eq!(status, 200);
    assert_eq!(common::sha256_bytes(&body), layer.digest);
}

/// The registry connections the proxy opened since `before` (kept pooled after
/// the response) carry `SO_RCVBUF` from `upstream.receiveBuffer`. The kernel
/// reports twice what was set: it counts its bookkeeping.
fn assert_new_registry_sockets_bounded(pid: u32, registry_port: u16, before: &HashSet<u64>) {
    let opened = new_sockets_to(pid, registry_port, before);
    assert!(!opened.is_empty(), "the proxy keeps its registry connection");
    let sizes: Vec<usize> = opened.iter().map(Socket::receive_buffer).collect();
    assert!(sizes.contains(&(2 * RECEIVE_BUFFER)), "registry sockets' SO_RCVBUF: {sizes:?}");
}

/// The registry seeded with a multi-layer image, and a proxy for it with
/// `upstream.receiveBuffer` set and `fastLane` as given.
async fn setup(fast_lane: bool) -> (Upstream, Proxy, images::TestImage) {
    let up = Upstream::start(Mode::Token).await;
    let image = images::multilayer();
    up.seed(&image, "multi").await;
    let settings =
        format!("upstream:\n  receiveBuffer: {}KiB\n  fastLane: {fast_lane}\n", RECEIVE_BUFFER / 1024);
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), &settings).await;
    (up, proxy, image)
}

fn api_path(repo_path: &str) -> String {
    format!("/v2/namespaces/team-a/connectors/reg/{repo_path}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relayed_blob_bounds_the_client_socket_and_the_registry_socket() {
    let (up, proxy, image) = setup(true).await;
    let (pid, registry_port) = (proxy.pid(), up.registry.socket_addr().port());
    let before = inodes_to(pid, registry_port);

    let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
    let (status, _) = get(&mut conn, &proxy, &api_path("multi/manifests/v1")).await;
    assert_eq!(status, 200);
    assert_eq!(proxy_end_of(pid, &conn).unsent_lowat(), 0, "a small response leaves the socket as it was");

    // The 3 MiB layer is relayed (spliced), not read whole.
    let layer = image.largest_blob();
    assert!(layer.size > 256 * 1024);
    get_blob(&mut conn, &proxy, layer).await;
    assert_eq!(proxy_end_of(pid, &conn).unsent_lowat(), CLIENT_UNSENT_LOWAT);
    assert_new_registry_sockets_bounded(pid, registry_port, &before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_general_path_gives_registry_sockets_the_receive_buffer_too() {
    let (up, proxy, image) = setup(false).await;
    let (pid, registry_port) = (proxy.pid(), up.registry.socket_addr().port());
    let before = inodes_to(pid, registry_port);

    let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
    get_blob(&mut conn, &proxy, image.largest_blob()).await;
    assert_new_registry_sockets_bounded(pid, registry_port, &before);
}
