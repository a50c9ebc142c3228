//! Where log lines go: a buffer that one background thread writes out in
//! batches, so an access event costs a copy into memory, not a write(2)
//! and a thread wake per request.
//!
//! A writer per line (tracing-appender's) woke its thread and made a system
//! call for each access event: on the plain-HTTP forwarding benchmark that
//! was about a fifth of modgate's throughput. Here the first line into an
//! empty buffer wakes the writer, which then lets lines gather for
//! [`GATHER`] and writes them with one call. Nothing is dropped: past
//! [`MAX_BUFFERED`] bytes a logging thread waits for the writer, so logging
//! slows down instead. [`LogWriter::flush`] writes everything at once
//! (before a line printed straight to stderr, to keep the order), and
//! dropping the [`FlushOnDrop`] guard flushes and stops the thread.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long lines gather after the first one before they are written: the
/// most a line waits to appear.
pub const GATHER: Duration = Duration::from_millis(10);
/// Bytes buffered beyond which a logging thread waits for the writer.
pub const MAX_BUFFERED: usize = 4 << 20;

/// A [`tracing_subscriber::fmt::MakeWriter`] over a batching writer thread.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits here for a first line (or the end).
    arrived: Condvar,
    /// Logging threads wait here for room, and flushes for the write.
    written: Condvar,
}

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    /// Batches taken by the writer and batches it has written out.
    taken: u64,
    done: u64,
    /// A flush wants the buffer written without the gathering pause.
    urgent: bool,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Flushes and stops the writer thread when dropped.
pub struct FlushOnDrop {
    writer: LogWriter,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// A writer to `out` (stderr, in `serve`), and the guard that flushes
    /// it when dropped.
    pub fn start(out: impl Write + Send + 'static) -> io::Result<(LogWriter, FlushOnDrop)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
            written: Condvar::new(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("modgate-log".into())
                .spawn(move || write_out(&shared, out))?
        };
        let writer = LogWriter { shared };
        let guard = FlushOnDrop {
            writer: writer.clone(),
            thread: Some(thread),
        };
        Ok((writer, guard))
    }

    /// Adds one formatted line (or part of one).
    fn push(&self, bytes: &[u8]) {
        let mut state = self.shared.lock();
        while state.lines.len() >= MAX_BUFFERED && !state.stop {
            state = self.shared.written.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        let first = state.lines.is_empty();
        state.lines.extend_from_slice(bytes);
        drop(state);
        if first {
            self.shared.arrived.notify_one();
        }
    }

    /// Returns once every line logged before the call has been written.
    pub fn flush(&self) {
        let mut state = self.shared.lock();
        if state.stop {
            return;
        }
        // What is buffered now goes in the next batch taken; a batch taken
        // already is written before that one.
        let target = state.taken + u64::from(!state.lines.is_empty());
        state.urgent = true;
        self.shared.arrived.notify_one();
        while state.done < target && !state.stop {
            state = self.shared.written.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The writer thread: waits for a first line, lets more gather, writes the
/// batch, and again, until stopped with nothing left.
fn write_out(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.lines.is_empty() && !state.stop {
            state = shared.arrived.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        if state.lines.is_empty() {
            return;
        }
        if !state.urgent && !state.stop {
            drop(state);
            std::thread::sleep(GATHER);
            state = shared.lock();
        }
        std::mem::swap(&mut batch, &mut state.lines);
        state.taken += 1;
        state.urgent = false;
        drop(state);
        // Nothing to tell anyone if stderr is gone.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > MAX_BUFFERED {
            batch = Vec::new();
        }
        shared.lock().done += 1;
        shared.written.notify_all();
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.writer.flush();
        self.writer.shared.lock().stop = true;
        self.writer.shared.arrived.notify_one();
        self.writer.shared.written.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.push(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// What the writer thread wrote, and how many writes it made.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    #[test]
    fn lines_are_written_in_order_in_few_writes_and_all_by_the_guards_drop() {
        let sink = Sink::default();
        let (writer, guard) = LogWriter::start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        w.write_all(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = sink.text();
        assert_eq!(text.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..1000).collect::<Vec<_>>(), "each thread's lines in order");
        }
        assert!(sink.writes() < 100, "batched: {} writes for 4000 lines", sink.writes());
    }

    #[test]
    fn a_flush_writes_what_was_logged_without_the_pause() {
        let sink = Sink::default();
        let (mut writer, _guard) = LogWriter::start(sink.clone()).unwrap();
        writer.write_all(b"before the listening line\n").unwrap();
        writer.flush();
        assert_eq!(sink.text(), "before the listening line\n");
        // A line on its own appears within the gathering pause.
        writer.write_all(b"later\n").unwrap();
        let started = Instant::now();
        while !sink.text().ends_with("later\n") {
            assert!(started.elapsed() < Duration::from_secs(5), "written in time");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Flushing with nothing buffered returns at once.
        writer.flush();
    }

    #[test]
    fn a_full_buffer_makes_logging_wait_and_loses_nothing() {
        /// A terminal that takes a while for each write.
        struct Slow(Sink);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let (mut writer, guard) = LogWriter::start(Slow(sink.clone())).unwrap();
        let line = vec![b'x'; 64 << 10];
        for _ in 0..(3 * MAX_BUFFERED / line.len()) {
            writer.write_all(&line).unwrap();
        }
        drop(guard);
        assert_eq!(sink.0.lock().unwrap().0.len(), 3 * MAX_BUFFERED);
    }
}
