//! TCP socket options that bound how much of a streamed body the kernel
//! queues on the proxy's behalf (upstream receive buffer, client unsent bytes).
//!
//! Why: a proxy sits between a registry that can send faster than the client
//! reads. Linux autotunes each upstream socket's receive buffer up to
//! `net.ipv4.tcp_rmem[2]` (32 MiB on the machines we measure on), and the
//! client socket's send queue up to `tcp_wmem[2]`, so with slow clients every
//! stream parks tens of MiB in the kernel. With 64 blob streams that was
//! ~1.5 GB of TCP memory: the host hit `tcp_mem` pressure, dropped packets on
//! every connection, and RTO stalls left single streams seconds behind the
//! rest (docs/performance.md, "Kernel buffering"). Bounding both queues keeps
//! the bytes in flight per stream to a few MiB without slowing it down.

use std::os::fd::RawFd;

/// Unsent bytes a client socket may queue before it stops being writable
/// (`TCP_NOTSENT_LOWAT`). Bytes in flight are still governed by the client's
/// window; this only bounds what waits behind them. With 64 streams, 64-512 KiB
/// measured alike within this machine's noise and 1 MiB lost throughput
/// (docs/performance.md).
pub const CLIENT_UNSENT_LOWAT: usize = 128 * 1024;

/// Sets an integer socket option. Failures are ignored: these are tuning,
/// and a socket that refuses one still works.
pub fn set_int(fd: RawFd, level: libc::c_int, option: libc::c_int, value: usize) {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt with a pointer to a live c_int of the stated size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Reads an integer socket option (`None` when the kernel refuses).
pub fn get_int(fd: RawFd, level: libc::c_int, option: libc::c_int) -> Option<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a live c_int whose size is passed in `len`.
    let r = unsafe { libc::getsockopt(fd, level, option, (&mut value as *mut libc::c_int).cast(), &mut len) };
    (r == 0).then(|| usize::try_from(value).ok()).flatten()
}

/// Limits the unsent bytes queued on a client socket to
/// [`CLIENT_UNSENT_LOWAT`], for the rest of its connection.
pub fn bound_client_unsent(fd: RawFd) {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, CLIENT_UNSENT_LOWAT);
}

/// The largest `SO_RCVBUF` an unprivileged socket may ask for
/// (`net.core.rmem_max`), if the kernel tells.
pub fn rmem_max() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok()?.trim().parse().ok()
}

/// What to do with `upstream.receiveBuffer` on this kernel: the size to set,
/// or `None` to leave the kernel's autotuning in charge, with a warning when
/// the setting cannot be honoured.
///
/// `SO_RCVBUF` above `rmem_max` is silently cut to `rmem_max`, and setting it
/// at all turns autotuning off for the socket: on a stock kernel (`rmem_max`
/// 208 KiB) a 4 MiB request would leave a window far smaller than autotuning's.
/// So a request above `rmem_max` is not applied.
pub fn usable_receive_buffer(
    requested: Option<usize>,
    rmem_max: Option<usize>,
) -> (Option<usize>, Option<String>) {
    match (requested, rmem_max) {
        (Some(want), Some(max)) if want > max => (
            None,
            Some(format!(
                "upstream.receiveBuffer ({want} bytes) is above net.core.rmem_max ({max}); the kernel would cut it, \
                 so upstream sockets keep the kernel's autotuning (hint: raise net.core.rmem_max, or lower \
                 upstream.receiveBuffer)"
            )),
        ),
        (want, _) => (want, None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_receive_buffer_above_rmem_max_is_not_applied() {
        let (size, warning) = usable_receive_buffer(Some(4 << 20), Some(212_992));
        assert_eq!(size, None);
        let warning = warning.unwrap();
        assert!(warning.contains("rmem_max") && warning.contains("hint"), "{warning}");
        assert_eq!(usable_receive_buffer(Some(4 << 20), Some(4 << 20)), (Some(4 << 20), None));
        assert_eq!(usable_receive_buffer(Some(1 << 20), None), (Some(1 << 20), None));
        assert_eq!(usable_receive_buffer(None, Some(212_992)), (None, None));
    }

    #[test]
    fn the_client_bound_reaches_the_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        bound_client_unsent(client.as_raw_fd());
        let got = get_int(client.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT);
        assert_eq!(got, Some(CLIENT_UNSENT_LOWAT));
    }
}
