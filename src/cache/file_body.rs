//! A cached file's body as a stream of chunks, read without a thread hop
//! when the kernel already holds the data.
//!
//! Reading a file through tokio's blocking pool costs two thread switches
//! per chunk; serving a hot 100 MB zip, that hop (not the copy) was the
//! cost. On Linux each chunk is first read with `preadv2(RWF_NOWAIT)`,
//! which copies from the page cache or fails at once with `EAGAIN` rather
//! than wait for the disk; only then does the read go to the blocking pool.
//! A cold file is therefore never read on an async worker.
//!
//! Chunks are large when few bodies are being read and shrink as more are,
//! so the memory held by chunks in flight stays near [`READ_BUDGET`]
//! however many clients download at once. A chunk is never larger than
//! what is left of the body: a 32-byte `.mod` takes a 32-byte buffer, not
//! a zeroed MiB.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::task::JoinHandle;

/// The chunk memory all bodies being read share, split evenly among them.
pub const READ_BUDGET: usize = 8 * 1024 * 1024;
/// The smallest chunk, whatever the number of readers.
pub const MIN_CHUNK: usize = 64 * 1024;
/// The largest chunk, for a lone reader.
pub const MAX_CHUNK: usize = 1024 * 1024;

/// How many [`FileBody`] values exist.
static READERS: AtomicUsize = AtomicUsize::new(0);

/// The chunk size when `readers` bodies are being read.
fn chunk_len(readers: usize) -> usize {
    (READ_BUDGET / readers.max(1)).clamp(MIN_CHUNK, MAX_CHUNK)
}

/// A file read front to back in chunks; `Err` items are I/O errors.
pub struct FileBody {
    file: Arc<File>,
    offset: u64,
    /// Where the body ends: the length its response declared.
    end: u64,
    /// A read handed to the blocking pool, when the page cache missed.
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    done: bool,
}

impl FileBody {
    /// Reads the first `len` bytes of `file` (its length when it was
    /// opened, which the response declared): never more, and less only if
    /// the file is shorter.
    pub fn new(file: File, len: u64) -> FileBody {
        READERS.fetch_add(1, Ordering::Relaxed);
        FileBody {
            file: Arc::new(file),
            offset: 0,
            end: len,
            pending: None,
            done: false,
        }
    }

    fn chunk(&mut self, read: io::Result<Bytes>) -> Option<io::Result<Bytes>> {
        match read {
            Ok(bytes) if bytes.is_empty() => {
                self.done = true;
                None
            }
            Ok(bytes) => {
                self.offset += bytes.len() as u64;
                Some(Ok(bytes))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        READERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads up to `len` bytes at `offset`, waiting for the disk if need be.
fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = BytesMut::zeroed(len);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}

/// Reads what the page cache holds at `offset` (up to `len` bytes), or
/// `None` when that would wait for the disk or the kernel cannot say.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, offset: u64, len: usize) -> Option<io::Result<Bytes>> {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    let mut buf = BytesMut::zeroed(len);
    loop {
        match preadv2(
            file,
            &mut [io::IoSliceMut::new(&mut buf)],
            offset,
            ReadWriteFlags::NOWAIT,
        ) {
            // Zero bytes with NOWAIT may mean "not cached" as well as the
            // end: let the blocking read tell the two apart.
            Ok(0) => return None,
            Ok(n) => {
                buf.truncate(n);
                return Some(Ok(buf.freeze()));
            }
            Err(Errno::INTR) => {}
            // EAGAIN: not in memory. EOPNOTSUPP / ENOSYS / EINVAL: a kernel
            // or file system without RWF_NOWAIT.
            Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => return None,
            Err(e) => return Some(Err(e.into())),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _offset: u64, _len: usize) -> Option<io::Result<Bytes>> {
    None
}

impl Stream for FileBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(pending) = &mut this.pending {
                let read = ready!(Pin::new(pending).poll(cx))
                    .unwrap_or_else(|e| Err(io::Error::other(format!("read task failed: {e}"))));
                this.pending = None;
                return Poll::Ready(this.chunk(read));
            }
            let left = this.end.saturating_sub(this.offset);
            if left == 0 {
                this.done = true;
                return Poll::Ready(None);
            }
            let len = chunk_len(READERS.load(Ordering::Relaxed)).min(usize::try_from(left).unwrap_or(usize::MAX));
            if let Some(read) = read_cached(&this.file, this.offset, len) {
                return Poll::Ready(this.chunk(read));
            }
            let (file, offset) = (this.file.clone(), this.offset);
            // Polled on the next turn, which registers the waker.
            this.pending = Some(tokio::task::spawn_blocking(move || read_at(&file, offset, len)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;
    use std::io::Write;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        (f, data)
    }

    #[tokio::test]
    async fn a_body_is_the_file_whatever_its_size() {
        for len in [0, 1, MIN_CHUNK - 1, MIN_CHUNK, MAX_CHUNK + 1, 3 * MAX_CHUNK + 12345] {
            let (f, data) = file_of(len);
            let chunks: Vec<Bytes> = FileBody::new(f.reopen().unwrap(), len as u64)
                .try_collect()
                .await
                .unwrap();
            assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= MAX_CHUNK), "{len}");
            assert_eq!(chunks.concat(), data, "{len}");
        }
    }

    #[tokio::test]
    async fn a_body_ends_at_its_length_and_no_chunk_reaches_past_it() {
        let (f, data) = file_of(MAX_CHUNK + 100);
        for len in [0, 32, MIN_CHUNK + 1, MAX_CHUNK + 1] {
            let chunks: Vec<Bytes> = FileBody::new(f.reopen().unwrap(), len as u64)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(chunks.concat(), data[..len], "{len}");
            // A file shorter than the length given ends where the file does.
            let short: Vec<Bytes> = FileBody::new(f.reopen().unwrap(), data.len() as u64 + 10)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(short.concat(), data);
        }
    }

    #[tokio::test]
    async fn the_blocking_read_alone_gives_the_same_bytes() {
        let (f, data) = file_of(2 * MAX_CHUNK + 3);
        let file = f.reopen().unwrap();
        let mut got = Vec::new();
        loop {
            let chunk = read_at(&file, got.len() as u64, MIN_CHUNK).unwrap();
            if chunk.is_empty() {
                break;
            }
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
    }

    #[test]
    fn chunks_shrink_as_readers_grow_but_stay_within_bounds() {
        assert_eq!(chunk_len(0), MAX_CHUNK);
        assert_eq!(chunk_len(1), MAX_CHUNK);
        assert_eq!(chunk_len(16), READ_BUDGET / 16);
        assert_eq!(chunk_len(100), READ_BUDGET / 100);
        assert_eq!(chunk_len(10_000), MIN_CHUNK);
        for n in 1..1000 {
            assert!(chunk_len(n) * n <= READ_BUDGET.max(n * MIN_CHUNK));
        }
    }
}
