//! A connection's queue of unsent output.
//!
//! Owns the bytes waiting to go to one socket and the batching of them into few
//! `writev` calls. Small frames are copied into a growing chunk (one memcpy beats a
//! refcount and an iovec per 50-byte frame); large frames are shared by reference, so a
//! big MESSAGE fanned out to many subscribers exists once in memory. A frame never spans
//! two chunks, which lets a slow consumer's queue be cut at a frame boundary. It never
//! decides policy (limits, closing): it only reports how much is pending.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// An owned chunk grows up to this size before a new one is started (64 KiB, a
/// typical socket send-buffer quantum, as Redis's per-event write cap).
const CHUNK_TARGET: usize = 64 * 1024;

/// Most iovecs handed to one `writev` (well under the kernel's IOV_MAX of 1024; a
/// queue rarely holds more than a few chunks, and a bigger array costs its zeroing on
/// every call).
const MAX_IOVECS: usize = 16;

/// One contiguous piece of queued output.
enum Chunk {
    /// Copied frames, appended one after another.
    Owned(Vec<u8>),
    /// One large frame shared with other connections' queues.
    Shared(Rc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(s) => s,
        }
    }
}

/// What one flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Bytes handed to the kernel.
    pub written: usize,
    /// The socket refused more (`WouldBlock`) before the queue emptied.
    pub blocked: bool,
}

/// Unsent output of one connection. See the module documentation.
#[derive(Default)]
pub struct WriteQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    head_written: usize,
    /// Unsent bytes in all chunks.
    pending: usize,
}

impl WriteQueue {
    /// Unsent bytes.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Queues a copy of `frame` (one or more whole frames).
    pub fn push(&mut self, frame: &[u8]) {
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut() {
            if last.len() + frame.len() <= CHUNK_TARGET || last.is_empty() {
                last.extend_from_slice(frame);
                self.pending += frame.len();
                return;
            }
        }
        let mut v = Vec::with_capacity(frame.len().clamp(256, CHUNK_TARGET));
        v.extend_from_slice(frame);
        self.chunks.push_back(Chunk::Owned(v));
        self.pending += frame.len();
    }

    /// Queues a frame shared with other queues.
    pub fn push_shared(&mut self, frame: &Rc<[u8]>) {
        self.pending += frame.len();
        self.chunks.push_back(Chunk::Shared(Rc::clone(frame)));
    }

    /// Drops everything after the frame currently being written (the whole queue if no
    /// frame is half-sent), so what the peer receives stays a sequence of whole frames.
    /// Used before a final `ERROR` to a connection that is being closed.
    pub fn cut_after_current_frame(&mut self) {
        let keep = match self.chunks.front_mut() {
            None => return,
            Some(_) if self.head_written == 0 => 0,
            Some(Chunk::Shared(s)) => s.len(),
            Some(Chunk::Owned(v)) => {
                let hw = self.head_written;
                if v[hw - 1] == b'\n' {
                    hw
                } else {
                    match memchr::memchr(b'\n', &v[hw..]) {
                        Some(i) => hw + i + 1,
                        None => v.len(),
                    }
                }
            }
        };
        self.chunks.truncate(1);
        if keep == 0 {
            self.chunks.clear();
            self.head_written = 0;
            self.pending = 0;
            return;
        }
        if let Some(Chunk::Owned(v)) = self.chunks.front_mut() {
            v.truncate(keep);
        }
        self.pending = keep - self.head_written;
    }

    /// Writes as much as the socket takes, up to about `budget` bytes, in batches of up
    /// to [`MAX_IOVECS`] chunks per `writev`.
    pub fn write_to<W: Write>(&mut self, w: &mut W, budget: usize) -> io::Result<Flushed> {
        let mut written = 0;
        while self.pending > 0 && written < budget {
            let mut iov: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n_iov = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                iov[i] = IoSlice::new(if i == 0 {
                    &bytes[self.head_written..]
                } else {
                    bytes
                });
                n_iov += 1;
            }
            let n = match w.write_vectored(&iov[..n_iov]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flushed {
                        written,
                        blocked: true,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            written += n;
            self.advance(n);
        }
        Ok(Flushed {
            written,
            blocked: false,
        })
    }

    /// Marks `n` bytes as written, dropping finished chunks.
    fn advance(&mut self, mut n: usize) {
        self.pending -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.head_written;
            if n >= left {
                n -= left;
                self.head_written = 0;
                self.chunks.pop_front();
            } else {
                self.head_written += n;
                n = 0;
            }
        }
        if self.chunks.is_empty() {
            // Give the deque's buffer back: idle connections should cost nothing here.
            self.chunks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `cap` bytes per call and then blocks after
    /// `limit` bytes in total.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let room = self.limit - self.out.len();
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n).min(room - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap || n == room {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_everything_in_order_through_partial_writes() {
        let mut q = WriteQueue::default();
        let shared: Rc<[u8]> = Rc::from(&b"SHARED\n"[..]);
        let mut want = Vec::new();
        for i in 0..1000 {
            let f = format!("frame {i}\n");
            q.push(f.as_bytes());
            want.extend_from_slice(f.as_bytes());
            if i % 100 == 0 {
                q.push_shared(&shared);
                want.extend_from_slice(&shared);
            }
        }
        assert_eq!(q.pending(), want.len());
        let mut w = Trickle {
            out: Vec::new(),
            cap: 7,
            limit: usize::MAX,
        };
        let f = q.write_to(&mut w, usize::MAX).unwrap();
        assert_eq!(
            f,
            Flushed {
                written: want.len(),
                blocked: false
            }
        );
        assert_eq!(w.out, want);
        assert!(q.is_empty());
    }

    #[test]
    fn reports_blocked_and_resumes() {
        let mut q = WriteQueue::default();
        q.push(b"hello\n");
        q.push(b"world\n");
        let mut w = Trickle {
            out: Vec::new(),
            cap: 100,
            limit: 8,
        };
        assert_eq!(
            q.write_to(&mut w, usize::MAX).unwrap(),
            Flushed {
                written: 8,
                blocked: true
            }
        );
        assert_eq!(q.pending(), 4);
        w.limit = 100;
        q.write_to(&mut w, usize::MAX).unwrap();
        assert_eq!(w.out, b"hello\nworld\n");
    }

    #[test]
    fn cut_keeps_the_frame_in_progress_only() {
        let mut q = WriteQueue::default();
        q.push(b"aaaa\n");
        q.push(b"bbbb\n");
        q.push(b"cccc\n");
        let mut w = Trickle {
            out: Vec::new(),
            cap: 100,
            limit: 7,
        };
        q.write_to(&mut w, usize::MAX).unwrap();
        q.cut_after_current_frame();
        q.push(b"ERR\n");
        w.limit = 100;
        q.write_to(&mut w, usize::MAX).unwrap();
        assert_eq!(w.out, b"aaaa\nbbbb\nERR\n");

        // Nothing half-sent: everything queued goes.
        let mut q = WriteQueue::default();
        q.push(b"aaaa\n");
        q.cut_after_current_frame();
        assert!(q.is_empty());

        // Cut exactly at a frame boundary.
        let mut q = WriteQueue::default();
        q.push(b"aaaa\nbbbb\n");
        let mut w = Trickle {
            out: Vec::new(),
            cap: 100,
            limit: 5,
        };
        q.write_to(&mut w, usize::MAX).unwrap();
        q.cut_after_current_frame();
        assert!(q.is_empty());
    }

    #[test]
    fn budget_bounds_one_flush() {
        let mut q = WriteQueue::default();
        for _ in 0..100 {
            q.push(&[b'x'; 1000]);
        }
        let mut w = Trickle {
            out: Vec::new(),
            cap: 1000,
            limit: usize::MAX,
        };
        let f = q.write_to(&mut w, 10_000).unwrap();
        assert_eq!(f.written, 10_000);
        assert!(!f.blocked);
        assert_eq!(q.pending(), 90_000);
    }
}
