//! The CONNECT relay: bytes both ways until both sides have closed.
//!
//! After `HTTP/1.1 200 Connection established`, each direction is pumped on
//! its own. When one side finishes sending (EOF), modgate half-closes the
//! other side's write direction and keeps relaying the opposite direction.
//! The tunnel ends when both directions are done, on an error, or when no
//! byte has moved for `timeouts.idle`.
//!
//! Memory: a direction copies through a buffer that exists only while bytes
//! are flowing, so an idle tunnel holds two sockets and a small task. On
//! Linux, a direction that has carried [`SPLICE_AFTER`] bytes switches to
//! splice(2) through a pipe, so bulk downloads never pass through user space.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::proxy::idle::Activity;
use crate::telemetry::access::Counter;

/// Bytes moved per read while a direction copies through user space.
const COPY_BUF: usize = 64 * 1024;
/// Bytes a direction carries before it switches to splice(2).
pub const SPLICE_AFTER: u64 = 1024 * 1024;

/// How a tunnel ended.
#[derive(Debug)]
pub enum Ended {
    /// Both sides closed.
    Closed,
    /// No bytes moved for the idle timeout.
    Idle,
    /// A socket failed.
    Failed(io::Error),
    /// Closed by modgate: the policy refuses the upstream's chain.
    Refused,
}

/// A look at relayed bytes, after they were written on: it returns false
/// once it has seen enough. It never changes or holds back the bytes.
pub type Tap<'a> = &'a mut (dyn FnMut(&[u8]) -> bool + Send);

/// The taps of a tunnel, one per direction.
#[derive(Default)]
pub struct Taps<'a> {
    /// Client-to-upstream bytes.
    pub up: Option<Tap<'a>>,
    /// Upstream-to-client bytes.
    pub down: Option<Tap<'a>>,
}

/// Relays between `client` and `upstream` until the tunnel ends, counting
/// client-to-upstream bytes in `up` and upstream-to-client bytes in `down`.
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
    up: &Counter,
    down: &Counter,
    taps: Taps<'_>,
) -> Ended {
    let activity = Activity::new();
    let both = async {
        tokio::try_join!(
            pump(client, upstream, &activity, up, taps.up),
            pump(upstream, client, &activity, down, taps.down),
        )
    };
    tokio::select! {
        result = both => match result {
            Ok(_) => Ended::Closed,
            Err(e) => Ended::Failed(e),
        },
        () = activity.idle_for(idle) => Ended::Idle,
    }
}

/// Moves `src` to `dst` until EOF, then half-closes `dst`.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &Activity,
    count: &Counter,
    mut tap: Option<Tap<'_>>,
) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    let mut splicer: Option<splice::Pipe> = None;
    loop {
        src.readable().await?;
        #[cfg(target_os = "linux")]
        if count.get() >= SPLICE_AFTER {
            if splicer.is_none() {
                splicer = splice::Pipe::new().ok();
            }
            if let Some(pipe) = &splicer {
                if pipe.drain_ready(src, dst, activity, count).await? {
                    return half_close(dst);
                }
                continue;
            }
        }
        if copy_ready(src, dst, activity, count, &mut tap).await? {
            return half_close(dst);
        }
    }
}

/// Copies what `src` has ready; `Ok(true)` at EOF.
async fn copy_ready(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &Activity,
    count: &Counter,
    tap: &mut Option<Tap<'_>>,
) -> io::Result<bool> {
    // Allocated here and freed once the socket is drained, so idle tunnels
    // hold no buffer.
    let mut buf = Vec::with_capacity(COPY_BUF);
    loop {
        buf.clear();
        match src.try_read_buf(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                write_all(dst, &buf).await?;
                if let Some(look) = tap {
                    if !look(&buf) {
                        *tap = None;
                    }
                }
                let before = count.get();
                count.add(n as u64);
                activity.touch();
                // A bulk transfer never drains the socket: hand back so the
                // caller can switch to splice.
                if cfg!(target_os = "linux") && before < SPLICE_AFTER && before + n as u64 >= SPLICE_AFTER {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(dst: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        dst.writable().await?;
        match dst.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn half_close(dst: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(dst).shutdown(Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

#[cfg(target_os = "linux")]
mod splice {
    //! socket → pipe → socket with splice(2): the bytes stay in the kernel.

    use std::io;
    use std::os::fd::{AsFd, OwnedFd};

    use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    use crate::proxy::idle::Activity;
    use crate::telemetry::access::Counter;

    /// Requested pipe capacity; the kernel may grant less.
    const PIPE_SIZE: usize = 1024 * 1024;

    pub struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
        size: usize,
    }

    impl Pipe {
        pub fn new() -> io::Result<Pipe> {
            let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
            let size = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32)).map_or(64 * 1024, |n| n as usize);
            Ok(Pipe { read, write, size })
        }

        /// Splices what `src` has ready into `dst`; `Ok(true)` at EOF.
        pub async fn drain_ready(
            &self,
            src: &TcpStream,
            dst: &TcpStream,
            activity: &Activity,
            count: &Counter,
        ) -> io::Result<bool> {
            let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
            loop {
                let moved = src.try_io(Interest::READABLE, || {
                    splice(src.as_fd(), None, self.write.as_fd(), None, self.size, flags).map_err(io::Error::from)
                });
                let mut in_pipe = match moved {
                    Ok(0) => return Ok(true),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                };
                count.add(in_pipe as u64);
                while in_pipe > 0 {
                    dst.writable().await?;
                    let sent = dst.try_io(Interest::WRITABLE, || {
                        splice(self.read.as_fd(), None, dst.as_fd(), None, in_pipe, flags).map_err(io::Error::from)
                    });
                    match sent {
                        Ok(n) => in_pipe -= n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                activity.touch();
            }
        }
    }
}
